//! The account aggregate (being written).
pub mod command;
pub mod event;
use serde::{Deserialize, Serialize};
/// Risk limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RiskLimits {}
impl RiskLimits {
    pub(crate) fn fingerprint(&self) -> u64 { 0 }
}
