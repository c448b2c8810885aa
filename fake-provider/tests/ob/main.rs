//! The UK Open Banking standard profile of the fake bank: discovery, JWKS, client tokens,
//! consents, FAPI request objects, id_tokens (hostile ones too) and refresh tokens.

mod authorisation;
mod common;
mod consents;
mod discovery;
mod id_token_faults;
mod refresh;
mod request_objects;
mod tokens;
