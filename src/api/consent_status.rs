//! The status of a consent at the provider, as UK Open Banking names it.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// A consent's status at the provider. Unknown names are kept as they came (`Other`) rather than
/// refused: a provider may add states, and status must show what it says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConsentStatus {
    /// Created; the customer has not acted yet.
    AwaitingAuthorisation,
    /// The customer authorised it.
    Authorised,
    /// The customer or the provider refused it.
    Rejected,
    /// Revoked (by the TPP or the customer).
    Revoked,
    /// Past its ExpirationDateTime.
    Expired,
    /// A status this operator does not know.
    Other(String),
}

impl ConsentStatus {
    /// The provider's name of the status.
    pub fn as_str(&self) -> &str {
        match self {
            ConsentStatus::AwaitingAuthorisation => "AwaitingAuthorisation",
            ConsentStatus::Authorised => "Authorised",
            ConsentStatus::Rejected => "Rejected",
            ConsentStatus::Revoked => "Revoked",
            ConsentStatus::Expired => "Expired",
            ConsentStatus::Other(s) => s,
        }
    }

    /// Reads the provider's name of a status.
    pub fn parse(s: &str) -> Self {
        match s {
            "AwaitingAuthorisation" => ConsentStatus::AwaitingAuthorisation,
            "Authorised" => ConsentStatus::Authorised,
            "Rejected" => ConsentStatus::Rejected,
            "Revoked" => ConsentStatus::Revoked,
            "Expired" => ConsentStatus::Expired,
            other => ConsentStatus::Other(other.to_string()),
        }
    }

    /// True for statuses after which the consent never changes.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            ConsentStatus::Rejected | ConsentStatus::Revoked | ConsentStatus::Expired
        )
    }
}

/// Reads as the provider's name, so `Option<ConsentStatus>::as_deref()` gives the text.
impl std::ops::Deref for ConsentStatus {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for ConsentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ConsentStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ConsentStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| ConsentStatus::parse(&s))
    }
}

/// A plain string in the CRD: any status the provider reports must be storable.
impl JsonSchema for ConsentStatus {
    fn schema_name() -> Cow<'static, str> {
        "ConsentStatus".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_kept() {
        for s in [
            "AwaitingAuthorisation",
            "Authorised",
            "Rejected",
            "Revoked",
            "Expired",
            "Consumed",
        ] {
            assert_eq!(ConsentStatus::parse(s).as_str(), s);
            let json = serde_json::to_string(&ConsentStatus::parse(s)).unwrap();
            assert_eq!(
                serde_json::from_str::<ConsentStatus>(&json)
                    .unwrap()
                    .as_str(),
                s
            );
        }
        assert_eq!(
            ConsentStatus::parse("Consumed"),
            ConsentStatus::Other("Consumed".into())
        );
    }

    #[test]
    fn finality() {
        assert!(ConsentStatus::Rejected.is_final());
        assert!(ConsentStatus::Revoked.is_final());
        assert!(ConsentStatus::Expired.is_final());
        assert!(!ConsentStatus::AwaitingAuthorisation.is_final());
        assert!(!ConsentStatus::Authorised.is_final());
        assert!(!ConsentStatus::Other("x".into()).is_final());
    }
}
