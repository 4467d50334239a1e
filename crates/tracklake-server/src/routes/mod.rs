pub mod events;
pub mod health;
pub mod users;
