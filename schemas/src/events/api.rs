//! The API's audit trail (`api_request.avsc`).

use serde::{Deserialize, Serialize};

use super::EventHeader;
use crate::Ip;

/// One request to tapwire's API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiRequest {
    /// `node`: the serving host; `sensor_id`: the serving instance.
    pub header: EventHeader,
    /// The signing token's name; empty when none did.
    pub user: String,
    /// `viewer` or `admin`; empty when no token signed it.
    pub role: String,
    /// The caller's address.
    pub source_ip: Option<Ip>,
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub route: String,
    /// The query string.
    pub query: String,
    /// HTTP status answered.
    pub status: i32,
    /// Time to answer.
    pub duration_ns: i64,
}

impl ApiRequest {
    /// Whether the request succeeded (a status below 400).
    pub fn succeeded(&self) -> bool {
        (100..400).contains(&self.status)
    }
}
