//! The aggregation stage (`tapwire aggregate`, `serve`, `query`): connection
//! counts and events in ClickHouse, and the views analysts ask for.
//!
//! Not built yet: tracked by the aggregator issue (#6).
