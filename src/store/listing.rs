//! Listings of a tenant's jobs that read no record to pick them: the
//! store's side of the index in [`super::counts`].
//!
//! Its own file, not in `counts.rs`, because the store's root uses the
//! index's type: a method on the store there would make the two files
//! import each other.

use super::counts::Listing;
use super::{StoreError, TenantStore};
use crate::config::ids::JobId;

impl TenantStore {
    /// Ids of the unfinished jobs `listing` wants, oldest first, from the
    /// index kept with the jobs: no record is read (after the first use of
    /// the index in this process, which reads the unfinished ones once).
    pub fn unfinished_ids(&self, listing: &Listing<'_>) -> Result<Vec<JobId>, StoreError> {
        self.queue_counts.unfinished(listing, || {
            let mut out = Vec::new();
            for id in self.active_jobs()? {
                out.extend(self.job(id)?);
            }
            Ok(out)
        })
    }
}
