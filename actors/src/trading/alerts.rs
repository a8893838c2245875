//! Alerts: the pattern rules' matches (`tradefloor_domain::rules`), journaled in the stream
//! `alert|venue`, and the rule set in force, journaled in `alert|rules` whenever an operator
//! replaces it (so it survives restarts). The rules monitor ([`super::rules`]) is the one
//! writer of alerts; it starts from the configured rules unless a replacement was journaled.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tradefloor_domain::Message;
use tradefloor_domain::rules::{Alert, RuleSet};
use tradefloor_persistence::codec::EventCodec;
use tradefloor_persistence::{AppendRequest, Journal};

use super::Exchange;
use super::rules::{RulesHandle, RulesMessage};
use crate::error::Error;

/// The entity kind of the alerts' streams.
pub const ALERT_KIND: &str = "alert";
/// Every alert, in the order raised.
pub const ALERTS_STREAM: &str = "alert|venue";
/// The rule sets operators put in force.
pub const RULES_STREAM: &str = "alert|rules";
/// Most alerts one page returns.
pub const ALERTS_PAGE_MAX: usize = 1_000;

/// One event of the alerts' streams. New variants go at the end: the binary codec stores a
/// variant by its position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    /// A rule matched.
    Raised(Alert),
    /// An operator replaced the rules: the set as JSON (its kinds are tagged by name, which
    /// the binary codec cannot carry).
    RulesReplaced {
        /// The rule set, JSON.
        rules: String,
        /// When, microseconds since the epoch.
        at: i64,
    },
}

impl Message for AlertEvent {
    const SCHEMA_VERSION: u16 = 1;
    const NAMES: &'static [&'static str] = &["alert.raised", "alert.rules_replaced"];

    fn name(&self) -> &'static str {
        match self {
            AlertEvent::Raised(_) => "alert.raised",
            AlertEvent::RulesReplaced { .. } => "alert.rules_replaced",
        }
    }
}

/// The alerts' codec.
pub(crate) fn alert_codec() -> EventCodec<AlertEvent> {
    EventCodec::new(
        AlertEvent::SCHEMA_VERSION,
        AlertEvent::name,
        AlertEvent::NAMES,
    )
}

pub(crate) fn storage(error: impl std::fmt::Display) -> Error {
    Error::Persistence {
        actor: "/rules".to_owned(),
        reason: error.to_string(),
    }
}

/// A page of alerts.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertPage {
    /// In the order raised, each with its sequence in `alert|venue`.
    pub alerts: Vec<(u64, Alert)>,
    /// The sequence to pass as `after` for the next page.
    pub next_after: u64,
}

/// The alerts after sequence `after` of `alert|venue`, at most `limit`.
pub async fn read_alerts(journal: &Journal, after: u64, limit: usize) -> Result<AlertPage, Error> {
    let limit = limit.clamp(1, ALERTS_PAGE_MAX);
    let codec = alert_codec();
    let stored = journal
        .read_stream(ALERTS_STREAM, after + 1, limit)
        .await
        .map_err(storage)?;
    let mut alerts = Vec::with_capacity(stored.len());
    for event in &stored {
        if let AlertEvent::Raised(alert) = codec.decode(event).map_err(storage)? {
            alerts.push((event.sequence, alert));
        }
    }
    let next_after = stored.last().map_or(after, |event| event.sequence);
    Ok(AlertPage { alerts, next_after })
}

/// The rule set last journaled in `alert|rules`, if an operator ever replaced one.
pub async fn journaled_rules(journal: &Journal) -> Result<Option<(RuleSet, u64)>, Error> {
    let last = journal.last_sequence(RULES_STREAM).await.map_err(storage)?;
    if last == 0 {
        return Ok(None);
    }
    let stored = journal
        .read_stream(RULES_STREAM, last, 1)
        .await
        .map_err(storage)?;
    let Some(event) = stored.first() else {
        return Ok(None);
    };
    match alert_codec().decode(event).map_err(storage)? {
        AlertEvent::RulesReplaced { rules, .. } => {
            let set = serde_json::from_str(&rules).map_err(storage)?;
            Ok(Some((set, last)))
        }
        AlertEvent::Raised(_) => Err(storage("alert|rules holds an alert")),
    }
}

impl Exchange {
    /// A page of the alerts raised (admin).
    pub async fn alerts(&self, after: u64, limit: usize) -> Result<AlertPage, Error> {
        read_alerts(&self.journal, after, limit).await
    }

    /// The rules in force, if the rules monitor runs on this node.
    pub fn rules(&self) -> Option<RuleSet> {
        self.rules_handle().map(|handle| handle.rules())
    }

    /// Puts `set` in force: journaled in `alert|rules`, then handed to the running monitor
    /// (whose windows start afresh). `Ok(false)`: no monitor runs on this node.
    pub async fn replace_rules(&self, set: RuleSet) -> Result<bool, Error> {
        set.validate().map_err(|reason| Error::Failed {
            actor: "/rules".to_owned(),
            reason: format!("invalid rules: {reason}"),
        })?;
        let Some(handle) = self.rules_handle() else {
            return Ok(false);
        };
        let rules = serde_json::to_string(&set).map_err(storage)?;
        let event = AlertEvent::RulesReplaced {
            rules,
            at: self.now().micros(),
        };
        let new_event = alert_codec()
            .to_new_event(&event, Vec::new(), None)
            .map_err(storage)?;
        let expected = self
            .journal
            .last_sequence(RULES_STREAM)
            .await
            .map_err(storage)?;
        self.journal
            .append(AppendRequest {
                stream: RULES_STREAM.to_owned(),
                kind: ALERT_KIND.to_owned(),
                expected_sequence: expected,
                events: vec![new_event],
                fence: None,
            })
            .await
            .map_err(storage)?;
        handle.set_rules(set.clone());
        if let Some(actor) = handle.actor() {
            let _ = actor.send_message(RulesMessage::Replace(set));
        }
        Ok(true)
    }

    fn rules_handle(&self) -> Option<Arc<RulesHandle>> {
        self.rules_monitor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|running| running.handle.clone())
    }
}
