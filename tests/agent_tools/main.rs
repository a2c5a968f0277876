//! The agents' daily tools through the API (issue 11), one test binary so CI links it once:
//! search, quick replies, private notes and mentions, the customer panel, and Zalo tags
//! (the simulator's tag API).

#[path = "../common/mod.rs"]
mod common;

mod customers;
mod labels;
mod notes;
mod quick_replies;
mod search;
mod sim_tags;
