//! Types that carry meaning: tenant ids, job ids, listener names.
//!
//! Parse, don't validate: a `TenantId` that exists is safe to use as a sled
//! tree name and as a spool folder name.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest tenant id accepted; it becomes a folder and a tree name.
pub const MAX_TENANT_ID_LEN: usize = 64;

/// A tenant's id: the `[tenant.<id>]` key of the config.
///
/// Lower-case ASCII letters, digits, `-` and `_`, starting with a letter or
/// digit, at most [`MAX_TENANT_ID_LEN`] bytes: safe as a file name and a tree name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

/// Why a string is not a valid tenant id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("tenant id {0:?} must be 1-64 characters of a-z, 0-9, '-' or '_', starting with a letter or digit")]
pub struct BadTenantId(pub String);

impl TenantId {
    /// Parses a tenant id.
    pub fn parse(s: &str) -> Result<Self, BadTenantId> {
        let ok = !s.is_empty()
            && s.len() <= MAX_TENANT_ID_LEN
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(TenantId(s.to_owned()))
        } else {
            Err(BadTenantId(s.to_owned()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = BadTenantId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TenantId::parse(&s)
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Highest job id: IPP `job-id` is a positive 32-bit signed integer (RFC 8011 5.3.2).
pub const MAX_JOB_ID: u32 = i32::MAX as u32;

/// A job's id, counted per tenant from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub u32);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The name of a shared listener (`[[listener]] name`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ListenerName(pub String);

impl fmt::Display for ListenerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_safe_names() {
        assert!(TenantId::parse("acme").is_ok());
        assert!(TenantId::parse("school-12_b").is_ok());
        for bad in ["", "../x", "Acme", "-x", "a/b", "a.b", &"x".repeat(65)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
