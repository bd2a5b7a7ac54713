//! Multi-region resilience (DESIGN §6): cluster health, cluster-link lag and, in later steps, the
//! shared failover decision. Nothing here consumes or writes records.

pub mod control;
pub mod health;
pub mod lag;
