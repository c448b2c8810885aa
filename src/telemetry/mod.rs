//! What the operator tells about itself: log lines (`logging`) and Prometheus metrics
//! (`metrics`, registered per concern).

mod logging;
mod metrics;

pub use logging::{init_logging, install_panic_hook, LogFormat};
pub use metrics::*;
