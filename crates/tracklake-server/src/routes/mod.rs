pub mod analytics;
pub mod deletion;
pub mod events;
pub mod health;
pub mod monitor;
pub mod query;
pub mod segment;
pub mod users;
