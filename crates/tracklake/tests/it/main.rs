//! Integration tests: the real `tracklake` binary on a free loopback port
//! with a temporary data directory. One test binary keeps link time low.

mod harness;

mod analytics;
mod api;
mod auth;
mod browser;
mod cli;
mod crash;
mod cross_origin;
mod deletion;
mod delta;
mod deploy;
mod disk;
mod docs;
mod dynamodb;
mod hostile;
mod lake;
mod lambda;
mod monitor;
mod privacy;
mod query;
mod rails;
mod s3;
mod segment;
mod slow_disk;
