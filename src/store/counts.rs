//! Which unfinished jobs each queue (listener and queue name) of a tenant
//! holds, in id order, with their owners, kept with the jobs: every commit
//! adds its job, every save that finishes one takes it away. So an IPP
//! printer's `queued-job-count` costs a lookup, and a Get-Jobs that asks
//! only for ids (its default answer, job-id and job-uri) reads no record
//! however long the backlog (only those of jobs whose final save is under
//! way, which may say final before the index hears it).
//!
//! It also keeps, as runs of consecutive ids, the ids known to have no
//! finished record (unfinished jobs, and stretches a walk found empty), so
//! a Get-Jobs for completed jobs, newest first, passes a backlog of
//! unfinished ones newer than them in a lookup or two, not one per job.
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
    /// Ids that have no finished record: each indexed job's, and those a
    /// walk down the records found without any (see [`Runs`]).
    no_finished: Runs,
    /// Indexed jobs whose final save is under way (or failed): their
    /// records may say final already, so a listing reads them to know.
    finishing: HashSet<JobId>,
}

/// A set of ids as runs of consecutive ones, first id to last (both in),
/// each run as long as it can be: two runs never touch. Whether an id is
/// in, and the highest one under it that is not, cost one lookup however
/// long its run.
#[derive(Default)]
struct Runs(BTreeMap<u32, u32>);

impl Runs {
    /// The run that holds `id`, as (first, last).
    fn run_of(&self, id: u32) -> Option<(u32, u32)> {
        let (&first, &last) = self.0.range(..=id).next_back()?;
        (last >= id).then_some((first, last))
    }

    fn contains(&self, id: u32) -> bool {
        self.run_of(id).is_some()
    }

    /// The highest id at most `id` that is not in the set (None: every
    /// one from `id` down to 0 is).
    fn outside_at_most(&self, id: u32) -> Option<u32> {
        match self.run_of(id) {
            Some((first, _)) => first.checked_sub(1),
            None => Some(id),
        }
    }

    /// Puts `first..=last` in, joined with the runs it meets or touches.
    fn insert(&mut self, first: u32, last: u32) {
        let (mut lo, mut hi) = (first, last);
        if let Some((&f, &l)) = self.0.range(..=first).next_back() {
            if u64::from(l) + 1 >= u64::from(first) {
                lo = f;
                hi = hi.max(l);
            }
        }
        // The runs that start inside lo..=hi or right after it.
        while let Some((&f, &l)) = self.0.range(lo..=hi.saturating_add(1)).next() {
            self.0.remove(&f);
            hi = hi.max(l);
        }
        self.0.insert(lo, hi);
    }

    /// Takes `id` out, splitting its run.
    fn remove(&mut self, id: u32) {
        let Some((first, last)) = self.run_of(id) else {
            return;
        };
        self.0.remove(&first);
        if first < id {
            self.0.insert(first, id - 1);
        }
        if id < last {
            self.0.insert(id + 1, last);
        }
    }
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
        self.no_finished.insert(job.id.0, job.id.0);
    }

    fn remove(&mut self, id: JobId) {
        // Its finished record is written: the walk must find it, whether
        // it was indexed or sat in a stretch found empty before it came.
        self.no_finished.remove(id.0);
        self.finishing.remove(&id);
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

    /// The ids `l` wants, each with whether its final save is under way
    /// (see [`Counted::finishing`]); as many more than `l.limit` as
    /// there are such jobs, for the caller to drop those that finished.
    fn list(&self, l: &Listing<'_>) -> Vec<(JobId, bool)> {
        let limit = l.limit.saturating_add(self.finishing.len());
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
                    .map(|(id, _)| (*id, self.finishing.contains(id)))
                    .take(limit),
            );
        }
        out.sort_unstable();
        out.truncate(limit);
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

    /// The index, locked, built first from what `unfinished` reads if this
    /// is its first use.
    fn built<E>(
        &self,
        unfinished: impl FnOnce() -> Result<Vec<Job>, E>,
    ) -> Result<MutexGuard<'_, Option<Counted>>, E> {
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
        Ok(guard)
    }

    /// `f` of the index, built first if this is its first use.
    fn with<T, E>(
        &self,
        unfinished: impl FnOnce() -> Result<Vec<Job>, E>,
        f: impl FnOnce(&Counted) -> T,
    ) -> Result<T, E> {
        Ok(f(self.built(unfinished)?.as_ref().expect("built")))
    }

    /// A committed job entered the queue.
    pub fn added(&self, job: &Job) {
        if let Some(c) = self.lock().as_mut() {
            c.add(job);
        }
    }

    /// A job is being saved, its record not written yet. A final one
    /// leaves the ids with no finished record now: the record is readable
    /// before the save is durable and [`QueueCounts::saved`], and a walk
    /// over finished jobs must not pass it when a client that read it as
    /// completed asks for completed jobs. Early is safe: the walk reads
    /// the record and sees its state, as when the save fails.
    ///
    /// Until then a listing of unfinished jobs marks it, for its caller
    /// to read its record: listed as not completed after a client saw it
    /// completed would be as wrong, and a save that fails leaves it
    /// unfinished.
    pub fn saving(&self, job: &Job) {
        if job.state.is_final() {
            if let Some(c) = self.lock().as_mut() {
                c.no_finished.remove(job.id.0);
                if c.holds(job.id) {
                    c.finishing.insert(job.id);
                }
            }
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

    /// The record with the highest id at most `at_most` that is not an
    /// unfinished job's, as `record_at_most` finds it (with whatever it
    /// returns, `T`); None when there is none. `record_at_most(id)` finds
    /// the record with the highest id at most `id` (None: none is), and
    /// `unfinished` is as for [`QueueCounts::queued`].
    ///
    /// Runs of unfinished jobs are passed in one lookup of the index, and
    /// the stretches without records under them (pruned, or ids never
    /// committed) in one call of `record_at_most`, which the index then
    /// keeps as ids with no finished record: however the unfinished jobs
    /// lie between the finished ones, a walk that went past them once
    /// needs a lookup or two per record it returns. A record of a job
    /// committed but not yet [`QueueCounts::added`] may be returned:
    /// the caller reads its state.
    pub fn newest_finished_at_most<T, E>(
        &self,
        at_most: JobId,
        unfinished: impl FnOnce() -> Result<Vec<Job>, E>,
        mut record_at_most: impl FnMut(JobId) -> Result<Option<(JobId, T)>, E>,
    ) -> Result<Option<(JobId, T)>, E> {
        let mut at_most = at_most.0;
        let mut guard = self.built(unfinished)?;
        loop {
            let c = guard.as_mut().expect("built");
            let Some(free) = c.no_finished.outside_at_most(at_most) else {
                return Ok(None);
            };
            // Under the lock, so no job commits and finishes between the
            // lookup and the index keeping what it found empty.
            let found = record_at_most(JobId(free))?;
            let empty_from = match &found {
                Some((id, _)) => id.0.checked_add(1),
                None => Some(0),
            };
            if let Some(from) = empty_from.filter(|&from| from <= free) {
                c.no_finished.insert(from, free);
            }
            match found {
                Some((id, _)) if c.no_finished.contains(id.0) => at_most = id.0,
                found => return Ok(found),
            }
            // Commits and saves may go on between two steps of a long walk.
            drop(guard);
            guard = self.lock();
        }
    }

    /// Ids of the unfinished jobs `listing` wants, in id order, each with
    /// whether its final save is under way ([`QueueCounts::saving`]): the
    /// caller reads the record of such a one and drops it if it says
    /// final. As many more than `listing.limit` as there are such jobs.
    /// `unfinished` as for [`QueueCounts::queued`].
    pub fn unfinished<E>(
        &self,
        listing: &Listing<'_>,
        unfinished: impl FnOnce() -> Result<Vec<Job>, E>,
    ) -> Result<Vec<(JobId, bool)>, E> {
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
        let list = |l: Listing<'_>| -> Vec<JobId> {
            let listed = c.unfinished(&l, || Ok::<_, ()>(first.clone())).unwrap();
            listed.into_iter().map(|(id, _)| id).collect()
        };
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
    fn runs_join_ids_that_touch_and_split_where_one_leaves() {
        let mut r = Runs::default();
        let runs = |r: &Runs| r.0.iter().map(|(&f, &l)| (f, l)).collect::<Vec<_>>();
        r.insert(5, 5);
        r.insert(7, 7);
        assert_eq!(runs(&r), [(5, 5), (7, 7)]);
        r.insert(6, 6);
        assert_eq!(runs(&r), [(5, 7)]);
        r.insert(0, 2);
        r.insert(3, 4);
        assert_eq!(runs(&r), [(0, 7)]);
        assert_eq!(r.outside_at_most(7), None, "all down to 0 are in");
        r.remove(0);
        r.remove(7);
        r.remove(4);
        assert_eq!(runs(&r), [(1, 3), (5, 6)]);
        assert_eq!(r.outside_at_most(6), Some(4));
        assert_eq!(r.outside_at_most(3), Some(0));
        assert_eq!(r.outside_at_most(9), Some(9));
        // One insert over several runs and up to the top id.
        r.insert(10, 12);
        r.insert(20, u32::MAX);
        r.insert(2, 25);
        assert_eq!(runs(&r), [(1, u32::MAX)]);
        r.remove(u32::MAX);
        r.remove(1);
        assert_eq!(runs(&r), [(2, u32::MAX - 1)]);
    }

    /// Inserts and removals at random against a plain set: the same ids,
    /// the same answers, and runs that never touch.
    #[test]
    fn runs_hold_the_same_ids_as_a_set() {
        let mut r = Runs::default();
        let mut set = std::collections::BTreeSet::new();
        let mut x: u32 = 0x9e37_79b9;
        let mut next = |n: u32| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x % n
        };
        for _ in 0..3_000 {
            let (a, len, op) = (next(64), next(5), next(3));
            if op == 0 {
                r.remove(a);
                set.remove(&a);
            } else {
                r.insert(a, a + len);
                set.extend(a..=a + len);
            }
            let mut last_end: Option<u32> = None;
            for (&f, &l) in &r.0 {
                assert!(f <= l);
                assert!(last_end.is_none_or(|e| e + 1 < f), "runs touch: {:?}", r.0);
                last_end = Some(l);
            }
            for id in 0..72 {
                assert_eq!(r.contains(id), set.contains(&id), "{id} in {:?}", r.0);
                let below = (0..=id).rev().find(|i| !set.contains(i));
                assert_eq!(r.outside_at_most(id), below, "{id} in {:?}", r.0);
            }
        }
    }

    /// Records as a tenant's tree holds them: state by id.
    type Records = BTreeMap<u32, JobState>;

    /// Walks `records` down from the top as the store does, reading what
    /// `newest_finished_at_most` asks: the finished ids, newest first, and
    /// how many reads it took.
    fn walk(c: &QueueCounts, records: &Records) -> (Vec<u32>, usize) {
        let unfinished = || {
            Ok::<_, ()>(
                records
                    .iter()
                    .filter(|(_, s)| !s.is_final())
                    .map(|(&id, &s)| job(id, None, s))
                    .collect(),
            )
        };
        let mut reads = 0;
        let mut found = Vec::new();
        let mut at_most = Some(JobId(u32::MAX));
        while let Some(at) = at_most {
            let record_at_most = |id: JobId| {
                reads += 1;
                Ok(records
                    .range(..=id.0)
                    .next_back()
                    .map(|(&id, &s)| (JobId(id), s)))
            };
            let Some((id, state)) = c
                .newest_finished_at_most(at, unfinished, record_at_most)
                .unwrap()
            else {
                break;
            };
            if state.is_final() {
                found.push(id.0);
            }
            at_most = id.0.checked_sub(1).map(JobId);
        }
        (found, reads)
    }

    #[test]
    fn finished_jobs_are_found_past_a_backlog_in_a_read_each() {
        // Ten finished jobs, then 100,000 unfinished ones.
        let mut records: Records = (1..=10).map(|id| (id, JobState::Completed)).collect();
        records.extend((11..=100_010).map(|id| (id, JobState::Pending)));
        let c = QueueCounts::default();
        let (found, reads) = walk(&c, &records);
        assert_eq!(found, (1..=10).rev().collect::<Vec<_>>());
        // The top, then one per finished job, then the bottom.
        assert!(reads <= 12, "{reads} reads");
        let (again, reads_again) = walk(&c, &records);
        assert_eq!(again, found);
        assert!(reads_again <= reads, "{reads_again} reads the second time");
        // Finished and unfinished in turn: a read per finished job still.
        let mixed: Records = (1..=1000)
            .map(|id| {
                let s = if id % 2 == 0 {
                    JobState::Held
                } else {
                    JobState::Canceled
                };
                (id, s)
            })
            .collect();
        let c = QueueCounts::default();
        let (found, reads) = walk(&c, &mixed);
        assert_eq!(found, (1..1000).rev().step_by(2).collect::<Vec<_>>());
        assert!(reads <= 502, "{reads} reads");
    }

    #[test]
    fn stretches_without_records_are_read_past_once() {
        // Ten finished jobs; over them unfinished jobs, each followed by
        // the id of one whose record was pruned.
        let mut records: Records = (1..=10).map(|id| (id, JobState::Aborted)).collect();
        records.extend((0..50_000).map(|i| (11 + 2 * i, JobState::Pending)));
        let c = QueueCounts::default();
        let (found, first) = walk(&c, &records);
        assert_eq!(found, (1..=10).rev().collect::<Vec<_>>());
        assert!(first > 50_000, "the first walk finds each empty id");
        let (found, reads) = walk(&c, &records);
        assert_eq!(found, (1..=10).rev().collect::<Vec<_>>());
        assert!(reads <= 12, "{reads} reads once they are known");
        assert!(c.lock().as_ref().unwrap().no_finished.0.len() <= 2);
    }

    #[test]
    fn a_job_that_finishes_in_a_stretch_found_empty_is_found() {
        let mut records: Records = [(1, JobState::Completed), (5, JobState::Completed)].into();
        let c = QueueCounts::default();
        assert_eq!(walk(&c, &records).0, [5, 1]);
        // 3 was reserved, its document still coming, when the walk found
        // nothing between 1 and 5; then it commits, and finishes.
        records.insert(3, JobState::Pending);
        c.added(&job(3, None, JobState::Pending));
        assert_eq!(walk(&c, &records).0, [5, 1]);
        records.insert(3, JobState::Completed);
        c.saved(&job(3, None, JobState::Completed));
        assert_eq!(walk(&c, &records).0, [5, 3, 1]);
        // Above every record too: 9 comes after the walk read the top.
        records.insert(9, JobState::Processing);
        c.added(&job(9, None, JobState::Processing));
        assert_eq!(walk(&c, &records).0, [5, 3, 1]);
        records.insert(9, JobState::Canceled);
        c.saved(&job(9, None, JobState::Canceled));
        assert_eq!(walk(&c, &records).0, [9, 5, 3, 1]);
        // A record committed and not yet counted in is returned as it is:
        // the caller reads its state.
        records.insert(12, JobState::Pending);
        let (found, _) = walk(&c, &records);
        assert_eq!(found, [9, 5, 3, 1]);
    }

    #[test]
    fn a_job_is_found_from_the_moment_its_final_save_starts() {
        let mut records: Records = [(1, JobState::Completed)].into();
        records.extend((2..=5).map(|id| (id, JobState::Pending)));
        let c = QueueCounts::default();
        assert_eq!(walk(&c, &records).0, [1]);
        // 4's record says completed before its save is durable and saved.
        c.saving(&job(4, None, JobState::Completed));
        records.insert(4, JobState::Completed);
        assert_eq!(walk(&c, &records).0, [4, 1]);
        c.saved(&job(4, None, JobState::Completed));
        assert_eq!(walk(&c, &records).0, [4, 1]);
        // 3's final save fails: its record, read, still says pending.
        c.saving(&job(3, None, JobState::Canceled));
        assert_eq!(walk(&c, &records).0, [4, 1]);
        // A save that does not finish the job changes nothing.
        c.saving(&job(5, None, JobState::Processing));
        assert!(c.lock().as_ref().unwrap().no_finished.contains(5));
    }

    #[test]
    fn a_job_whose_final_save_is_under_way_is_listed_marked_and_one_more() {
        let c = QueueCounts::default();
        let ipp = ListenerName("ipp".into());
        let queued: Vec<Job> = (1..=5).map(|i| job(i, None, JobState::Pending)).collect();
        let listing = Listing {
            listener: &ipp,
            queue: None,
            owner: None,
            limit: 2,
        };
        let list = || c.unfinished(&listing, || Ok::<_, ()>(queued.clone()));
        assert_eq!(list(), Ok(vec![(JobId(1), false), (JobId(2), false)]));
        c.saving(&job(2, None, JobState::Completed));
        // Not finishing: a save that keeps the job unfinished, and one of
        // a job not in the index.
        c.saving(&job(3, None, JobState::Processing));
        c.saving(&job(9, None, JobState::Completed));
        assert_eq!(
            list(),
            Ok(vec![(JobId(1), false), (JobId(2), true), (JobId(3), false)])
        );
        c.saved(&job(2, None, JobState::Completed));
        assert_eq!(list(), Ok(vec![(JobId(1), false), (JobId(3), false)]));
        assert!(c.lock().as_ref().unwrap().finishing.is_empty());
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
            Ok(vec![
                (JobId(1), false),
                (JobId(3), false),
                (JobId(5), false)
            ])
        );
        let guard = c.lock();
        let counted = guard.as_ref().unwrap();
        assert_eq!(counted.owners.len(), 2);
        let even = counted.owners.get("even").unwrap();
        // The set's, and one per job of that owner.
        assert_eq!(Arc::strong_count(even), 1 + 500);
    }
}
