//! How many unfinished jobs each queue (listener and queue name) of a
//! tenant holds, kept with the jobs: every commit adds its job, every save
//! that finishes one takes it away. So an IPP printer's `queued-job-count`
//! costs a lookup, not a read of every queued record.
//!
//! Built from the tenant's queue on first use (one read of the unfinished
//! records per process); while it is built, commits and saves wait, and
//! the changes they made are in what it reads. Ids rather than bare
//! numbers are kept, so a job saved final twice is taken away once.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::config::ids::{JobId, ListenerName};
use crate::store::job::Job;

/// The queue a job came in by.
type QueueKey = (ListenerName, Option<String>);

#[derive(Default)]
struct Counted {
    /// Unfinished jobs by id, and their queue.
    jobs: HashMap<JobId, usize>,
    /// Queues, indexed by the numbers in `jobs`.
    queues: Vec<QueueKey>,
    /// Unfinished jobs per queue, aligned with `queues`.
    counts: Vec<u64>,
}

impl Counted {
    fn add(&mut self, job: &Job) {
        if self.jobs.contains_key(&job.id) {
            return;
        }
        let key = (job.listener.clone(), job.queue.clone());
        let i = match self.queues.iter().position(|q| *q == key) {
            Some(i) => i,
            None => {
                self.queues.push(key);
                self.counts.push(0);
                self.queues.len() - 1
            }
        };
        self.jobs.insert(job.id, i);
        self.counts[i] += 1;
    }

    fn remove(&mut self, id: JobId) {
        if let Some(i) = self.jobs.remove(&id) {
            self.counts[i] = self.counts[i].saturating_sub(1);
        }
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
        let c = guard.as_ref().expect("built above");
        Ok(c.queues
            .iter()
            .position(|(l, q)| l == listener && q.as_deref() == queue)
            .map_or(0, |i| c.counts[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ids::TenantId;
    use crate::store::job::JobState;

    fn job(id: u32, queue: Option<&str>, state: JobState) -> Job {
        Job {
            tenant: TenantId::parse("a").unwrap(),
            id: JobId(id),
            listener: ListenerName("ipp".into()),
            queue: queue.map(str::to_owned),
            peer: "127.0.0.1:1".parse().unwrap(),
            user: "u".into(),
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
}
