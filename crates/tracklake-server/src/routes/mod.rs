pub mod events;
pub mod health;
pub mod segment;
pub mod users;
