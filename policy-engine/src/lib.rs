//! The policy stage (`tapwire policy`): audit and enforce policies compiled
//! once, and a verdict for every enriched event.
//!
//! Not built yet: tracked by the policy-engine issue (#5).
