//! The cloakroom demo: a small shop that runs every session use case of cloakroom's users'
//! documents (login and logout, protected pages, an admin page, a cart, a multi-step
//! registration, preferences, flash messages and "your devices"), as HTML pages and as a JSON
//! API.
//!
//! [`app::router`] builds the app from a [`app::Config`]; [`server`] runs it from the command
//! line's [`options::Options`].
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod auth;
pub mod catalogue;
pub mod csrf;
pub mod error;
pub mod options;
pub mod routes;
pub mod server;
pub mod state;
pub mod throttle;
pub mod users;
pub mod views;

pub use app::{Config, router};
pub use throttle::LoginLimits;
pub use users::PasswordCost;
