//! tpp-operator: keeps Open Banking TPP registrations, client tokens and consents in Kubernetes.

pub mod api;
pub mod controller;
pub mod http;
pub mod leader;
pub mod oidc;
pub mod provider;
pub mod secrets;
pub mod signing;
pub mod telemetry;
