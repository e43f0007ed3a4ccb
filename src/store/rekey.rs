//! Key rotation (`printroute rekey T`): a tenant gets a new key and
//! everything sealed with the old one is sealed again with it, in the
//! background, while the tenant's jobs go on; then the old key is shredded.
//!
//! The steps, each durable before the next, so a crash anywhere resumes
//! (the daemon resumes a rotation whose previous key file it finds at
//! start):
//! 1. the current key is copied to `<tenant>.key.prev` and a new key
//!    replaces it ([`crypt::rotate`]); from here new records and documents
//!    are sealed with the new key, and both keys open;
//! 2. receives that started with the old key finish (their documents are
//!    sealed with it);
//! 3. every record of the tenant not sealed with the new key is sealed
//!    again (compare-and-swap, so a record the dispatcher changes meanwhile
//!    is never overwritten with its old value), and every unfinished job's
//!    document is re-sealed into a new file that replaces the old one
//!    (renamed into place, never while the job's document is being removed);
//! 4. a commit makes all of it durable;
//! 5. the previous key is shredded: what sled's log or the file system
//!    still holds of the old seals can no longer be read.
//!
//! Documents spooled by a version that did not seal documents stay as they
//! are until their jobs finish: their records say they are plain, and
//! sealing the file under a reader that expects plain bytes would print
//! ciphertext.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::crypt::{self, KeyRing, DOC_CHUNK, TAG_LEN};
use super::job::Job;
use super::{keys, private, Op, StoreError, TenantStore, INCOMING_PREFIX};

/// How often a rotation looks whether the receives that started with the
/// old key have finished.
const WRITERS_POLL: Duration = Duration::from_millis(50);

/// What a rotation re-sealed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RekeyReport {
    /// Records sealed again with the new key.
    pub records: usize,
    /// Spool documents sealed again with the new key.
    pub documents: usize,
    /// Bytes of those documents.
    pub document_bytes: u64,
    /// Documents left plain (spooled before documents were sealed).
    pub plain_documents: usize,
}

impl TenantStore {
    /// True when a rotation was started and not finished (its previous key
    /// file is there): the daemon resumes it at start.
    pub fn rekey_pending(&self) -> bool {
        crypt::previous_path(&self.key_path).exists()
    }

    /// Rotates the tenant's key and re-seals everything with the new one
    /// (see the module). Blocking and long: run it off the runtime. A
    /// tenant that has no key yet (no job ever) has nothing to rotate.
    pub fn rekey(&self) -> Result<RekeyReport, StoreError> {
        if self.rekeying.swap(true, Ordering::AcqRel) {
            return Err(StoreError::RekeyRunning);
        }
        let r = self.rotate_and_reseal();
        self.rekeying.store(false, Ordering::Release);
        r
    }

    fn rotate_and_reseal(&self) -> Result<RekeyReport, StoreError> {
        let key_err = |err| StoreError::Key {
            tenant: self.id.clone(),
            err,
        };
        // 1. The new key, under the lock that creates keys.
        let old_writers = {
            let _creating = self.creating.lock().expect("tenant creation lock");
            if !self.key_path.exists() {
                return Ok(RekeyReport::default());
            }
            let ring = crypt::rotate(&self.key_path).map_err(key_err)?;
            self.keys.store(Some(Arc::new(ring)));
            std::mem::replace(
                &mut *self.writers.lock().expect("writer epoch lock"),
                Arc::new(()),
            )
        };
        tracing::info!(tenant = %self.id, "key rotation: new key in place, re-sealing");
        // 2. Receives that started with the old key finish first.
        let waited = Instant::now();
        while Arc::strong_count(&old_writers) > 1 {
            std::thread::sleep(WRITERS_POLL);
        }
        drop(old_writers);
        let ring = self.existing_key()?;
        let mut report = RekeyReport::default();
        // 3. Records, then documents. New entries of the spool log go to a
        // new segment, so the older ones die as their entries move out.
        self.log.roll();
        if let Some(tree) = self.existing_tree() {
            for kv in tree.scan_prefix(keys::JOB_PREFIX) {
                let (k, _) = kv?;
                if self.reseal_record(tree, &k, &ring)? {
                    report.records += 1;
                }
            }
            for kv in tree.scan_prefix(keys::QUEUE_PREFIX) {
                let (k, _) = kv?;
                let Some(id) = keys::id_of(&k) else { continue };
                let Some(job) = self.job(id)? else { continue };
                if !job.document_sealed {
                    report.plain_documents += 1;
                } else if self.reseal_document(&job, &ring)? {
                    report.documents += 1;
                    report.document_bytes += job.size;
                }
            }
            // 4. Durable: the group commit flushes sled and syncs its file.
            let next = self.next_id.load(Ordering::Relaxed);
            self.committer.commit_blocking(
                self.lane,
                vec![Op::CounterMax(tree.clone(), keys::NEXT_JOB_ID, next)],
            )?;
        }
        // 5. The old key goes.
        {
            let _creating = self.creating.lock().expect("tenant creation lock");
            let current = crypt::KeyRing::load(&self.key_path)
                .map_err(key_err)?
                .ok_or_else(|| key_err(crypt::CryptError::NoKey(self.key_path.clone())))?;
            crypt::shred(&crypt::previous_path(&self.key_path))?;
            self.keys.store(Some(Arc::new(KeyRing {
                current: current.current,
                previous: None,
            })));
        }
        tracing::info!(
            tenant = %self.id,
            records = report.records,
            documents = report.documents,
            bytes = report.document_bytes,
            plain = report.plain_documents,
            waited_ms = waited.elapsed().as_millis() as u64,
            "key rotation finished; the previous key is shredded"
        );
        Ok(report)
    }

    /// Seals one record with the current key unless it already is;
    /// true when it was changed.
    fn reseal_record(
        &self,
        tree: &sled::Tree,
        k: &[u8],
        ring: &KeyRing,
    ) -> Result<bool, StoreError> {
        let aad = self.aad(k);
        loop {
            let Some(v) = tree.get(k)? else {
                return Ok(false);
            };
            let plain = if crypt::is_sealed(&v) {
                let (plain, current) = ring.open(&v, &aad).map_err(|err| StoreError::Key {
                    tenant: self.id.clone(),
                    err,
                })?;
                if current {
                    return Ok(false);
                }
                plain
            } else {
                v.to_vec()
            };
            let sealed = ring.current.seal(&plain, &aad);
            // Changed meanwhile (the dispatcher saved it, sealed with the
            // new key): look again.
            if tree.compare_and_swap(k, Some(v), Some(sealed))?.is_ok() {
                return Ok(true);
            }
        }
    }

    /// True when `job` finished (or went) while its document was being
    /// re-sealed: its document was emptied or removed under the reader.
    fn finished_meanwhile(&self, job: &Job) -> Result<bool, StoreError> {
        Ok(
            (self.log.entry(job.id).is_none() && !self.spool_path(job.id).exists())
                || self.job(job.id)?.is_none_or(|j| j.state.is_final()),
        )
    }

    /// Writes `job`'s document read from `reader` sealed again with the
    /// current key (a new header and chunks) to `out`.
    fn reseal_into(
        &self,
        job: &Job,
        reader: &mut super::document::BlockingDocumentReader,
        ring: &KeyRing,
        out: &mut impl Write,
    ) -> Result<(), StoreError> {
        let (mut sealer, header) = crypt::DocSealer::new(&ring.current, self.document_aad());
        out.write_all(&header)?;
        let mut chunk = Vec::with_capacity(DOC_CHUNK + TAG_LEN);
        let mut left = job.size;
        loop {
            let want = left.min(DOC_CHUNK as u64) as usize;
            chunk.resize(want, 0);
            reader.read_exact(&mut chunk)?;
            left -= want as u64;
            // A full chunk is never the last: a document whose length
            // is a multiple of the chunk ends with an empty one.
            let last = want < DOC_CHUNK;
            sealer
                .seal(&mut chunk, last)
                .map_err(|err| StoreError::Key {
                    tenant: self.id.clone(),
                    err,
                })?;
            out.write_all(&chunk)?;
            if last {
                break;
            }
        }
        // The reader checks that nothing follows the last chunk.
        if reader.read(&mut [0u8; 1])? != 0 {
            return Err(io::Error::other("the document is longer than its record").into());
        }
        Ok(())
    }

    /// Moves a job's document in the spool log to the current segment,
    /// sealed again with the current key; true when it was sealed with
    /// the old one. The entry's location changes in a group commit; a job
    /// that finishes meanwhile keeps no entry.
    fn reseal_log_document(&self, job: &Job, ring: &KeyRing) -> Result<bool, StoreError> {
        let doc = self.document(job)?;
        let resealed = (|| -> Result<(Vec<u8>, bool), StoreError> {
            let mut reader = doc.blocking_reader()?;
            let old = !reader.sealed_with_current_key()?;
            let mut entry = vec![0u8; super::log::FRAME_LEN];
            self.reseal_into(job, &mut reader, ring, &mut entry)?;
            Ok((entry, old))
        })();
        let (mut entry, old) = match resealed {
            Ok(r) => r,
            Err(_) if self.finished_meanwhile(job)? => return Ok(false),
            Err(e) => return Err(e),
        };
        super::log::frame(&mut entry, job.id);
        let tree = self.tree()?;
        let append = super::Append {
            log: self.log.clone(),
            tree: tree.clone(),
            dir: self.spool_dir_file()?.clone(),
            id: job.id,
            entry,
            relocate: true,
        };
        self.committer
            .commit_blocking_with(self.lane, Vec::new(), Some(append))?;
        Ok(old)
    }

    /// Seals a job's document again with the current key unless it already
    /// is; true when it was replaced.
    fn reseal_document(&self, job: &Job, ring: &KeyRing) -> Result<bool, StoreError> {
        if self.log.entry(job.id).is_some() {
            return self.reseal_log_document(job, ring);
        }
        let doc = self.document(job)?;
        let mut reader = match doc.blocking_reader() {
            Ok(r) => r,
            // Finished and removed meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        match reader.sealed_with_current_key() {
            Ok(true) => return Ok(false),
            Ok(false) => {}
            // Emptied under the reader (the job finished): nothing to re-seal.
            Err(e) => {
                return if self.finished_meanwhile(job)? {
                    Ok(false)
                } else {
                    Err(e.into())
                };
            }
        }
        let n = self.incoming_seq.fetch_add(1, Ordering::Relaxed);
        // An incoming name: a crash leaves it to the start-up clean-up.
        let tmp = self
            .spool_dir
            .join(format!("{INCOMING_PREFIX}rekey-{}-{n}", std::process::id()));
        let written = (|| -> Result<(), StoreError> {
            let mut out = io::BufWriter::new(private::create_file(&tmp)?);
            self.reseal_into(job, &mut reader, ring, &mut out)?;
            let f = out.into_inner().map_err(|e| e.into_error())?;
            f.sync_data()?;
            Ok(())
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            // Finished meanwhile: its document was emptied or removed under
            // the reader. Nothing to re-seal.
            return if self.finished_meanwhile(job)? {
                Ok(false)
            } else {
                Err(e)
            };
        }
        // Into place, unless the job finished meanwhile: removing a
        // document takes the same lock.
        let path = self.spool_path(job.id);
        let replaced = {
            let _free = self.free.lock().expect("free spool list lock");
            if path.exists() {
                std::fs::rename(&tmp, &path)?;
                true
            } else {
                std::fs::remove_file(&tmp)?;
                false
            }
        };
        File::open(&self.spool_dir)?.sync_all()?;
        Ok(replaced)
    }
}
