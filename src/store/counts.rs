//! Which unfinished jobs each queue (listener and queue name) of a tenant
//! holds, in id order, with their owners, kept with the jobs: every commit
//! adds its job, every save that finishes one takes it away. So an IPP
//! printer's `queued-job-count` costs a lookup, and a Get-Jobs that asks
//! only for ids (its default answer, job-id and job-uri) reads no record
//! however long the backlog.
//!
//! Built from the tenant's queue on first use (one read of the unfinished
//! records per process); while it is built, commits and saves wait, and
//! the changes they made are in what it reads. Ids rather than bare
//! numbers are kept, so a job saved final twice is taken away once.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::ids::{JobId, ListenerName};
use crate::store::job::Job;

/// The queue a job came in by.
type QueueKey = (ListenerName, Option<String>);

/// One queue's unfinished jobs.
struct Queue {
    key: QueueKey,
    /// By id (the order jobs are processed in, RFC 8011 section 4.2.6.2),
    /// with the job's owner, shared with every other job of that owner.
    jobs: BTreeMap<JobId, Arc<str>>,
}

#[derive(Default)]
struct Counted {
    /// Every queue that held a job since the index was built: as many as
    /// the tenant's inputs, so a job's queue is found by looking in each.
    queues: Vec<Queue>,
    /// Owners of the indexed jobs, each name once.
    owners: HashSet<Arc<str>>,
}

/// Which unfinished jobs a listing wants: those of one listener, of one of
/// its queues or of all of them, of one owner or of anyone.
#[derive(Clone, Copy, Debug)]
pub struct Listing<'a> {
    /// The listener the jobs came in by.
    pub listener: &'a ListenerName,
    /// `Some(queue)`: that queue only (`Some(None)` the listener's default
    /// printer); `None`: every queue of the listener.
    pub queue: Option<Option<&'a str>>,
    /// Only the jobs of this owner (`my-jobs`), or everyone's.
    pub owner: Option<&'a str>,
    /// At most this many, the oldest first.
    pub limit: usize,
}

impl Counted {
    fn holds(&self, id: JobId) -> bool {
        self.queues.iter().any(|q| q.jobs.contains_key(&id))
    }

    fn add(&mut self, job: &Job) {
        if self.holds(job.id) {
            return;
        }
        let owner = match self.owners.get(job.user.as_str()) {
            Some(o) => o.clone(),
            None => {
                let o: Arc<str> = job.user.as_str().into();
                self.owners.insert(o.clone());
                o
            }
        };
        let i = match self
            .queues
            .iter()
            .position(|q| q.key.0 == job.listener && q.key.1 == job.queue)
        {
            Some(i) => i,
            None => {
                self.queues.push(Queue {
                    key: (job.listener.clone(), job.queue.clone()),
                    jobs: BTreeMap::new(),
                });
                self.queues.len() - 1
            }
        };
        self.queues[i].jobs.insert(job.id, owner);
    }

    fn remove(&mut self, id: JobId) {
        let Some(owner) = self.queues.iter_mut().find_map(|q| q.jobs.remove(&id)) else {
            return;
        };
        // The set's and this job's: no other job of that owner is left.
        if Arc::strong_count(&owner) == 2 {
            self.owners.remove(&owner);
        }
    }

    fn count(&self, listener: &ListenerName, queue: Option<&str>) -> u64 {
        self.queues
            .iter()
            .find(|q| q.key.0 == *listener && q.key.1.as_deref() == queue)
            .map_or(0, |q| q.jobs.len() as u64)
    }

    fn list(&self, l: &Listing<'_>) -> Vec<JobId> {
        let owner = match l.owner {
            // An owner with no job here has nothing to list.
            Some(name) => match self.owners.get(name) {
                Some(o) => Some(o),
                None => return Vec::new(),
            },
            None => None,
        };
        let mut out = Vec::new();
        // Each queue's first `limit` are enough: the merged oldest `limit`
        // are among them. Owners compare by pointer: each name is kept once.
        for q in &self.queues {
            if q.key.0 != *l.listener || l.queue.is_some_and(|name| q.key.1.as_deref() != name) {
                continue;
            }
            out.extend(
                q.jobs
                    .iter()
                    .filter(|(_, o)| owner.is_none_or(|want| Arc::ptr_eq(o, want)))
                    .map(|(id, _)| *id)
                    .take(l.limit),
            );
        }
        out.sort_unstable();
        out.truncate(l.limit);
        out
    }
}

/// Unfinished jobs per queue of one tenant.
#[derive(Default)]
pub struct QueueCounts {
    /// None until first used.
    counted: Mutex<Option<Counted>>,
}

impl QueueCounts {
    fn lock(&self) -> MutexGuard<'_, Option<Counted>> {
        self.counted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The index, built first from what `unfinished` reads if this is its
    /// first use.
    fn with<T, E>(
        &self,
        unfinished: impl FnOnce() -> Result<Vec<Job>, E>,
        f: impl FnOnce(&Counted) -> T,
    ) -> Result<T, E> {
        let mut guard = self.lock();
        if guard.is_none() {
            let mut c = Counted::default();
            for j in unfinished()? {
                if !j.state.is_final() {
                    c.add(&j);
                }
            }
            *guard = Some(c);
        }
        Ok(f(guard.as_ref().expect("built above")))
    }

    /// A committed job entered the queue.
    pub fn added(&self, job: &Job) {
        if let Some(c) = self.lock().as_mut() {
            c.add(job);
        }
    }

    /// A job was saved; a final one left the queue.
    pub fn saved(&self, job: &Job) {
        if job.state.is_final() {
            if let Some(c) = self.lock().as_mut() {
                c.remove(job.id);
            }
        }
    }

    /// Unfinished jobs that came in by `listener` and `queue`; `unfinished`
    /// reads the tenant's unfinished records, once, the first time.
    pub fn queued<E>(
        &self,
        listener: &ListenerName,
        queue: Option<&str>,
        unfinished: impl FnOnce() -> Result<Vec<Job>, E>,
    ) -> Result<u64, E> {
        self.with(unfinished, |c| c.count(listener, queue))
    }

    /// Ids of the unfinished jobs `listing` wants, in id order; `unfinished`
    /// as for [`QueueCounts::queued`].
    pub fn unfinished<E>(
        &self,
        listing: &Listing<'_>,
        unfinished: impl FnOnce() -> Result<Vec<Job>, E>,
    ) -> Result<Vec<JobId>, E> {
        self.with(unfinished, |c| c.list(listing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ids::TenantId;
    use crate::store::job::JobState;

    fn job(id: u32, queue: Option<&str>, state: JobState) -> Job {
        owned(id, queue, state, "u")
    }

    fn owned(id: u32, queue: Option<&str>, state: JobState, user: &str) -> Job {
        Job {
            tenant: TenantId::parse("a").unwrap(),
            id: JobId(id),
            listener: ListenerName("ipp".into()),
            queue: queue.map(str::to_owned),
            peer: "127.0.0.1:1".parse().unwrap(),
            user: user.into(),
            name: String::new(),
            format: None,
            size: 1,
            sha256: String::new(),
            document_sealed: false,
            workflow: "w".into(),
            step: 0,
            state,
            created_ms: 0,
            hold_until_ms: None,
            step_started_ms: 0,
            delivering: None,
            history: Vec::new(),
            history_dropped: 0,
            ipp_job_attributes: None,
            pin: None,
        }
    }

    #[test]
    fn counts_follow_commits_and_finishes_once_built() {
        let c = QueueCounts::default();
        let ipp = ListenerName("ipp".into());
        // Before first use, changes are what the first read sees.
        c.added(&job(1, None, JobState::Pending));
        let n = c
            .queued(&ipp, None, || {
                Ok::<_, ()>(vec![
                    job(1, None, JobState::Pending),
                    job(2, Some("q"), JobState::Held),
                    job(3, None, JobState::Completed),
                ])
            })
            .unwrap();
        assert_eq!(n, 1);
        let never = || -> Result<Vec<Job>, ()> { panic!("read once only") };
        c.added(&job(4, None, JobState::Pending));
        c.added(&job(4, None, JobState::Pending));
        assert_eq!(c.queued(&ipp, None, never), Ok(2));
        let mut done = job(1, None, JobState::Completed);
        c.saved(&done);
        done.state = JobState::Canceled;
        c.saved(&done);
        c.saved(&job(4, None, JobState::Processing));
        assert_eq!(c.queued(&ipp, None, never), Ok(1));
        assert_eq!(c.queued(&ipp, Some("q"), never), Ok(1));
        assert_eq!(c.queued(&ListenerName("other".into()), None, never), Ok(0));
    }

    fn ids(v: &[u32]) -> Vec<JobId> {
        v.iter().map(|&i| JobId(i)).collect()
    }

    #[test]
    fn listing_is_in_id_order_and_stops_at_the_limit() {
        let c = QueueCounts::default();
        let ipp = ListenerName("ipp".into());
        let lpd = ListenerName("lpd".into());
        let first = vec![
            owned(9, None, JobState::Pending, "bob"),
            owned(3, None, JobState::Held, "alice"),
            owned(5, Some("q"), JobState::Pending, "alice"),
            owned(4, None, JobState::Completed, "alice"),
        ];
        let all = |queue, owner, limit| Listing {
            listener: &ipp,
            queue,
            owner,
            limit,
        };
        let list = |l: Listing<'_>| c.unfinished(&l, || Ok::<_, ()>(first.clone())).unwrap();
        assert_eq!(list(all(Some(None), None, 10)), ids(&[3, 9]));
        // Committed later with smaller ids than some queued: still id order.
        c.added(&owned(7, None, JobState::Pending, "carol"));
        c.added(&owned(1, Some("q"), JobState::Pending, "bob"));
        let mut other = owned(2, None, JobState::Pending, "alice");
        other.listener = lpd.clone();
        c.added(&other);
        assert_eq!(list(all(Some(None), None, 10)), ids(&[3, 7, 9]));
        assert_eq!(list(all(Some(None), None, 2)), ids(&[3, 7]));
        assert_eq!(list(all(Some(Some("q")), None, 10)), ids(&[1, 5]));
        // Every queue of the listener, merged; not the other listener's.
        assert_eq!(list(all(None, None, 10)), ids(&[1, 3, 5, 7, 9]));
        assert_eq!(list(all(None, None, 3)), ids(&[1, 3, 5]));
        // One owner's, and nothing for one with no job here.
        assert_eq!(list(all(None, Some("alice"), 10)), ids(&[3, 5]));
        assert_eq!(list(all(Some(None), Some("alice"), 10)), ids(&[3]));
        assert_eq!(list(all(None, Some("dave"), 10)), ids(&[]));
        let on_lpd = Listing {
            listener: &lpd,
            queue: None,
            owner: None,
            limit: 10,
        };
        assert_eq!(list(on_lpd), ids(&[2]));
        // Finished jobs leave; an owner with none left is forgotten.
        c.saved(&owned(3, None, JobState::Completed, "alice"));
        c.saved(&owned(7, None, JobState::Canceled, "carol"));
        assert_eq!(list(all(None, None, 10)), ids(&[1, 5, 9]));
        assert_eq!(list(all(None, Some("carol"), 10)), ids(&[]));
        assert!(!c.lock().as_ref().unwrap().owners.contains("carol"));
        assert!(c.lock().as_ref().unwrap().owners.contains("alice"));
        assert_eq!(c.queued(&ipp, None, || Ok::<_, ()>(vec![])), Ok(1));
        assert_eq!(c.queued(&ipp, Some("q"), || Ok::<_, ()>(vec![])), Ok(2));
    }

    #[test]
    fn an_owner_is_kept_once_however_many_jobs() {
        let c = QueueCounts::default();
        let ipp = ListenerName("ipp".into());
        let queued: Vec<Job> = (1..=1000)
            .map(|i| {
                owned(
                    i,
                    None,
                    JobState::Pending,
                    if i % 2 == 0 { "even" } else { "odd" },
                )
            })
            .collect();
        let listing = Listing {
            listener: &ipp,
            queue: Some(None),
            owner: Some("odd"),
            limit: 3,
        };
        assert_eq!(
            c.unfinished(&listing, || Ok::<_, ()>(queued)),
            Ok(ids(&[1, 3, 5]))
        );
        let guard = c.lock();
        let counted = guard.as_ref().unwrap();
        assert_eq!(counted.owners.len(), 2);
        let even = counted.owners.get("even").unwrap();
        // The set's, and one per job of that owner.
        assert_eq!(Arc::strong_count(even), 1 + 500);
    }
}
