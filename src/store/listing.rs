//! Listings of a tenant's jobs that read no record to pick them, only the
//! records they return: the store's side of the index in [`super::counts`].
//!
//! Its own file, not in `counts.rs`, because the store's root uses the
//! index's type: a method on the store there would make the two files
//! import each other.

use super::counts::Listing;
use super::{keys, StoreError, TenantStore};
use crate::config::ids::JobId;
use crate::store::job::Job;

impl TenantStore {
    /// Ids of the unfinished jobs `listing` wants, oldest first, from the
    /// index kept with the jobs: no record is read (after the first use of
    /// the index in this process, which reads the unfinished ones once),
    /// but those of jobs whose final save is under way, whose records may
    /// say final already.
    pub fn unfinished_ids(&self, listing: &Listing<'_>) -> Result<Vec<JobId>, StoreError> {
        let listed = self
            .queue_counts
            .unfinished(listing, || self.unfinished_records())?;
        let mut out = Vec::with_capacity(listed.len().min(listing.limit));
        for (id, finishing) in listed {
            if out.len() == listing.limit {
                break;
            }
            if finishing && self.job(id)?.is_none_or(|j| j.state.is_final()) {
                continue;
            }
            out.push(id);
        }
        Ok(out)
    }

    /// Records of finished jobs, most recent id first (RFC 8011 section
    /// 4.2.6.2's order for completed jobs), read one at a time. Unfinished
    /// jobs are passed by the index, unread, a run of them in one lookup,
    /// and stretches of pruned records in one read of the tree: a caller
    /// that wants a few finished jobs reads those, not a backlog of
    /// unfinished ones newer than them.
    pub fn finished_jobs_newest_first_past_backlog(
        &self,
    ) -> impl Iterator<Item = Result<Job, StoreError>> + '_ {
        let mut at_most = Some(JobId(u32::MAX));
        std::iter::from_fn(move || loop {
            let tree = self.existing_tree()?;
            let found = self.queue_counts.newest_finished_at_most(
                at_most?,
                || self.unfinished_records(),
                |id| record_at_most(tree, id),
            );
            let (id, v) = match found {
                Ok(found) => found?,
                Err(e) => {
                    at_most = None;
                    return Some(Err(e));
                }
            };
            at_most = id.0.checked_sub(1).map(JobId);
            match self.decode(&keys::job(id), &v) {
                // Not finished: committed and not indexed yet, or its
                // final save not written (or failed).
                Ok(job) if !job.state.is_final() => continue,
                r => return Some(r),
            }
        })
    }

    /// Every unfinished record: what the index is built from, once.
    pub(super) fn unfinished_records(&self) -> Result<Vec<Job>, StoreError> {
        let mut out = Vec::new();
        for id in self.active_jobs()? {
            out.extend(self.job(id)?);
        }
        Ok(out)
    }
}

/// The job record with the highest id at most `id`: one read, however
/// many ids under `id` have none.
fn record_at_most(tree: &sled::Tree, id: JobId) -> Result<Option<(JobId, sled::IVec)>, StoreError> {
    let Some(kv) = tree.range(keys::job(JobId(0))..=keys::job(id)).next_back() else {
        return Ok(None);
    };
    let (k, v) = kv?;
    Ok(keys::id_of(&k).map(|id| (id, v)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::ids::{ListenerName, TenantId};
    use crate::store::job::{now_ms, JobState, NewJob};
    use crate::store::tests::reopen;
    use crate::store::Store;

    fn tenant() -> TenantId {
        TenantId::parse("a").unwrap()
    }

    async fn commit(t: &Arc<TenantStore>, n: u32) -> JobId {
        let mut w = t.spool_writer(1 << 20, 1 << 30).await.unwrap();
        w.write(format!("doc {n}").as_bytes()).await.unwrap();
        let new = NewJob {
            listener: ListenerName("ipp".into()),
            queue: None,
            peer: "127.0.0.2:4000".parse().unwrap(),
            user: "alice".into(),
            name: format!("job {n}"),
            format: None,
            workflow: "held".into(),
            ipp_job_attributes: None,
            pin: None,
        };
        t.commit_new(w, new).await.unwrap().id
    }

    async fn finish(t: &TenantStore, id: u32, state: JobState) {
        let mut job = t.job(JobId(id)).unwrap().unwrap();
        job.set_state(state, "done");
        t.save(&job).await.unwrap();
    }

    fn finished(t: &TenantStore) -> Vec<(u32, JobState)> {
        t.finished_jobs_newest_first_past_backlog()
            .map(|j| j.map(|j| (j.id.0, j.state)).unwrap())
            .collect()
    }

    /// The moment between a final save's record write and its flush: the
    /// record says final, the index has not heard that it was saved.
    #[tokio::test]
    async fn a_job_whose_record_says_final_is_listed_so_before_its_save_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let t = store.provision(&[tenant()]).unwrap().remove(0);
        for n in 1..=4 {
            commit(&t, n).await;
        }
        let ipp = ListenerName("ipp".into());
        let listing = Listing {
            listener: &ipp,
            queue: None,
            owner: None,
            limit: 2,
        };
        let unfinished = |t: &TenantStore| t.unfinished_ids(&listing).unwrap();
        assert_eq!(unfinished(&t), [JobId(1), JobId(2)]);
        let mut done = t.job(JobId(2)).unwrap().unwrap();
        done.set_state(JobState::Completed, "done");
        t.queue_counts.saving(&done);
        // Its save has not written the record yet (or failed): unfinished.
        assert_eq!(unfinished(&t), [JobId(1), JobId(2)]);
        assert!(finished(&t).is_empty());
        // Written, not yet flushed.
        let k = keys::job(done.id);
        let tree = t.existing_tree().unwrap();
        tree.insert(k, t.encode(&k, &done).unwrap()).unwrap();
        assert_eq!(unfinished(&t), [JobId(1), JobId(3)]);
        assert_eq!(finished(&t), [(2, JobState::Completed)]);
        t.queue_counts.saved(&done);
        assert_eq!(unfinished(&t), [JobId(1), JobId(3)]);
        assert_eq!(finished(&t), [(2, JobState::Completed)]);
    }

    #[tokio::test]
    async fn finished_jobs_come_newest_first_past_the_backlog_and_pruned_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let t = store.provision(&[tenant()]).unwrap().remove(0);
        assert!(finished(&t).is_empty(), "no tree yet");
        for n in 1..=12 {
            assert_eq!(commit(&t, n).await, JobId(n));
        }
        assert!(finished(&t).is_empty(), "none finished");
        finish(&t, 2, JobState::Canceled).await;
        finish(&t, 3, JobState::Completed).await;
        // Records of 2 and 3 are pruned; then more jobs finish.
        assert_eq!(t.prune_finished(now_ms() + 1).await.unwrap(), 2);
        finish(&t, 5, JobState::Completed).await;
        finish(&t, 6, JobState::Aborted).await;
        finish(&t, 10, JobState::Completed).await;
        let listed = [
            (10, JobState::Completed),
            (6, JobState::Aborted),
            (5, JobState::Completed),
        ];
        assert_eq!(finished(&t), listed);
        // A backlog of unfinished jobs newer than all of them, and one
        // that finishes in it, after the index knew its stretch.
        for n in 13..=400 {
            commit(&t, n).await;
        }
        assert_eq!(finished(&t), listed);
        finish(&t, 200, JobState::Canceled).await;
        finish(&t, 1, JobState::Completed).await;
        let listed = [
            (200, JobState::Canceled),
            (10, JobState::Completed),
            (6, JobState::Aborted),
            (5, JobState::Completed),
            (1, JobState::Completed),
        ];
        assert_eq!(finished(&t), listed);
        assert_eq!(
            t.finished_jobs_newest_first_past_backlog()
                .take(2)
                .map(|j| j.unwrap().id.0)
                .collect::<Vec<_>>(),
            [200, 10]
        );
        // Built again from the records after a restart.
        drop(t);
        store.close().unwrap();
        drop(store);
        let store = reopen(dir.path());
        let t = store.provision(&[tenant()]).unwrap().remove(0);
        assert_eq!(finished(&t), listed);
        let next = commit(&t, 401).await;
        assert_eq!(next, JobId(401));
        finish(&t, 401, JobState::Completed).await;
        assert_eq!(finished(&t)[..2], [(401, JobState::Completed), listed[0]]);
    }
}
