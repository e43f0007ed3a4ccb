//! Portal sign-in with a unix/NSS password, checked through PAM with the
//! service `[global.web] pam-service` (`/etc/pam.d/<service>`).
//!
//! Who may sign in is decided exactly as for the control socket: the user's
//! uid and groups go through [`crate::admin::control::authorize`] under the
//! config in force. A global admin gets a global session; a tenant's admin
//! a session for the tenant whose sign-in page was used, and nothing else.
//!
//! PAM blocks (it may ask a directory server, and `pam_unix` sleeps after a
//! wrong password), so each conversation runs on the blocking pool, at most
//! [`MAX_PAM_CONVERSATIONS`] at once and one per source address. Every
//! refusal (wrong password, unknown user, a user who is no admin of that
//! tenant, a second attempt while one is running) takes at least
//! [`MIN_REFUSAL_TIME`] and is answered like a wrong token, so that neither
//! the answer nor its timing tells which it was.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::caller::Caller;
use crate::admin::control::{authorize, lookup_user, Scope};
use crate::admin::tokens::TokenScope;
use crate::config::ids::TenantId;
use crate::config::Config;

/// PAM conversations running at once; more wait their turn.
pub const MAX_PAM_CONVERSATIONS: usize = 8;

/// A refused password sign-in is answered no sooner than this after it
/// arrived: longer than `pam_unix`'s delay after a wrong password (2 s,
/// randomised by libpam up to 25 % either way), so that a right password of
/// a user who is no admin is not told apart from a wrong one by its timing.
pub const MIN_REFUSAL_TIME: Duration = Duration::from_secs(3);

/// Longest user name accepted (longer ones are refused without asking PAM).
pub const MAX_USER_BYTES: usize = 256;

/// Longest password accepted (longer ones are refused without asking PAM).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The daemon's side of password sign-in: the cap on PAM conversations and
/// the addresses that have one running.
pub struct Passwords {
    slots: Semaphore,
    running: Mutex<HashSet<IpAddr>>,
}

impl Default for Passwords {
    fn default() -> Self {
        Passwords {
            slots: Semaphore::new(MAX_PAM_CONVERSATIONS),
            running: Mutex::new(HashSet::new()),
        }
    }
}

/// Marks an address as having a PAM conversation running, until dropped.
struct Running<'a> {
    passwords: &'a Passwords,
    ip: IpAddr,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.passwords
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.ip);
    }
}

impl Passwords {
    /// Who `user` signs in as with `password` on the sign-in page of
    /// `tenant` (none: the global one), from `ip`; `None`: refused, after
    /// at least [`MIN_REFUSAL_TIME`].
    pub async fn sign_in(
        &self,
        config: &Config,
        service: &str,
        ip: IpAddr,
        user: &str,
        password: &str,
        tenant: Option<&TenantId>,
    ) -> Option<Caller> {
        let started = Instant::now();
        let caller = self
            .check(config, service, ip, user, password, tenant)
            .await;
        if caller.is_none() {
            tokio::time::sleep_until((started + MIN_REFUSAL_TIME).into()).await;
        }
        caller
    }

    async fn check(
        &self,
        config: &Config,
        service: &str,
        ip: IpAddr,
        user: &str,
        password: &str,
        tenant: Option<&TenantId>,
    ) -> Option<Caller> {
        if user.is_empty()
            || user.len() > MAX_USER_BYTES
            || password.len() > MAX_PASSWORD_BYTES
            || user.contains('\0')
            || password.contains('\0')
        {
            return None;
        }
        if !self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ip)
        {
            tracing::info!(%ip, "password sign-in while another from the same address runs");
            return None;
        }
        let _running = Running {
            passwords: self,
            ip,
        };
        let _slot = self.slots.acquire().await.ok()?;
        let (service, name, pass) = (service.to_owned(), user.to_owned(), password.to_owned());
        let found = tokio::task::spawn_blocking(move || {
            pam_accepts(&service, &name, &pass).then(|| lookup_user(&name))?
        })
        .await
        .ok()??;
        let (uid, identity) = found;
        let who = format!("user {user} (password)");
        session_scope(authorize(config, &identity, uid)?, tenant).map(|scope| Caller { scope, who })
    }
}

/// The scope of a session of an admin with `rights` who signed in on the
/// page of `tenant` (none: the global one): a global admin's is global
/// everywhere; a tenant admin's is that one tenant, and only on its page.
pub fn session_scope(rights: Scope, tenant: Option<&TenantId>) -> Option<TokenScope> {
    match (rights, tenant) {
        (Scope::Global, _) => Some(TokenScope::Global),
        (Scope::Tenants(mine), Some(t)) if mine.contains(t) => Some(TokenScope::Tenant(t.clone())),
        (Scope::Tenants(_), _) => None,
    }
}

/// Whether PAM service `service` authenticates `user` with `password` and
/// accepts the account (not locked or expired). Blocking.
#[cfg(feature = "pam")]
pub fn pam_accepts(service: &str, user: &str, password: &str) -> bool {
    use pam_client::{conv_mock::Conversation, Context, Flag};
    let conversation = Conversation::with_credentials(user, password);
    let mut context = match Context::new(service, Some(user), conversation) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(service, error = %e, "PAM service unusable; password sign-in refused");
            return false;
        }
    };
    let ok = context.authenticate(Flag::NONE).is_ok() && context.acct_mgmt(Flag::NONE).is_ok();
    // PAM may let a module change the user name; only the one asked for counts.
    ok && context.user().ok().as_deref() == Some(user)
}

/// Built without the `pam` feature: no password is accepted (sign in with a token).
#[cfg(not(feature = "pam"))]
pub fn pam_accepts(service: &str, user: &str, _password: &str) -> bool {
    tracing::warn!(
        service,
        user,
        "password sign-in refused: this build has no PAM (cargo feature pam)"
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_scoped_like_the_admin_and_the_page() {
        let acme = TenantId::parse("acme").unwrap();
        let other = TenantId::parse("other").unwrap();
        let admin_of_acme = || Scope::Tenants(vec![acme.clone()]);
        assert_eq!(
            session_scope(admin_of_acme(), Some(&acme)),
            Some(TokenScope::Tenant(acme.clone()))
        );
        assert_eq!(session_scope(admin_of_acme(), Some(&other)), None);
        assert_eq!(session_scope(admin_of_acme(), None), None);
        assert_eq!(
            session_scope(Scope::Global, Some(&acme)),
            Some(TokenScope::Global)
        );
        assert_eq!(session_scope(Scope::Global, None), Some(TokenScope::Global));
    }
}
