//! The console's three tabs, each a component owning its state, keys, view and help entries.

pub mod connections;
pub mod inbox;
pub mod rules;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Inbox,
    Connections,
    Rules,
}
