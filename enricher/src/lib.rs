//! The enrichment stage (`tapwire enrich`, `tapwire k8s-watch`): time-correct
//! pod context for every raw event, from the compacted `tapwire.pods` topic.
//!
//! Not built yet: tracked by the enricher issue (#4).
