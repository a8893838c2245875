//! Orders: placing one (through its saga, see [`placement`](super::placement)), cancelling it
//! and retrying a stalled one.

use tradefloor_domain::OrderId;
use tradefloor_domain::saga::{OrderView, SagaInput};

use super::{Exchange, NewOrder};
use crate::error::Error;
use crate::routing::remote::Forwarding;

impl Exchange {
    /// Places an order: validates it against its market, starts its saga and waits until the
    /// book accepted or rejected it (or [`TradingConfig::placement_wait`] passed: the order
    /// is then answered as pending and goes on).
    pub async fn place_order(&self, order: NewOrder) -> Result<OrderView, Error> {
        match &self.remoting {
            None => self.place_order_here(order, order.order_id.is_none()).await,
            Some(remoting) => {
                self.place_order_routed(remoting, order, Forwarding::Allowed)
                    .await
            }
        }
    }

    /// Asks for the order to be cancelled; answers the order as its saga knows it then (the
    /// cancel completes asynchronously: see [`Exchange::order`]).
    pub async fn cancel_order(&self, order_id: OrderId) -> Result<OrderView, Error> {
        let input = SagaInput::CancelRequested { at: self.now() };
        match self.host.send(&order_id.to_string(), input).await {
            Ok(reply) => Ok(reply.view),
            Err(Error::Rejected(tradefloor_domain::Error::SagaNotStarted)) => {
                Err(Error::Rejected(tradefloor_domain::Error::OrderNotFound {
                    order_id,
                }))
            }
            Err(error) => Err(error),
        }
    }

    /// Resumes an order whose saga stalled (a step exhausted its retries): the operator's
    /// retry. A saga that is not stalled ignores it.
    pub async fn retry_order(&self, order_id: OrderId) -> Result<OrderView, Error> {
        let input = SagaInput::Retry { at: self.now() };
        Ok(self.host.send(&order_id.to_string(), input).await?.view)
    }
}
