//! Who is asking: the scope and name of the token a request or a portal
//! session was signed in with.

use crate::admin::control::Scope;
use crate::admin::tokens::{TokenRecord, TokenScope};
use crate::config::ids::TenantId;

/// Who is asking, from a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// What it may touch.
    pub scope: TokenScope,
    /// For the audit log: `token <id> (<name>)`.
    pub who: String,
}

impl Caller {
    /// From a verified token.
    pub fn from_token(t: &TokenRecord) -> Caller {
        Caller {
            scope: t.scope.clone(),
            who: format!("token {} ({})", t.id, t.name),
        }
    }

    /// Whether it may see tenant `t` at all.
    pub fn sees(&self, t: &TenantId) -> bool {
        match &self.scope {
            TokenScope::Global => true,
            TokenScope::Tenant(mine) => mine == t,
        }
    }

    /// Whether it is a global admin.
    pub fn is_global(&self) -> bool {
        self.scope == TokenScope::Global
    }

    /// The control socket's scope of the same caller.
    pub fn control_scope(&self) -> Scope {
        match &self.scope {
            TokenScope::Global => Scope::Global,
            TokenScope::Tenant(t) => Scope::Tenants(vec![t.clone()]),
        }
    }
}
