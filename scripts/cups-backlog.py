#!/usr/bin/env python3
"""A backlog for a private cupsd's stopped queue, for scripts/bench-ipp.sh.

  cups-backlog.py fill SERVERROOT QUEUE N   (cupsd stopped)
  cups-backlog.py holds URL                 (cupsd running)

fill: N more jobs for QUEUE, written into the spool the way cupsd keeps its
own (scheduler/job.c, cupsdSaveJob and cupsdSaveAllJobs): a control file
c<id> per job, the job's IPP attributes (RFC 8010 encoding), and its
document d<id>-001, plus the job's entry in cache/job.cache. The template
is the queue's last pending job as cupsd saved it on stopping: the same
attributes with the new job's job-id, a new job-uuid and job-name, and a
copy of its document. job.cache is written last, so it is newer than every
control file and cupsd loads it at start (cupsdLoadAllJobs, load_job_cache;
each pending job's control file is read then too, by cupsdLoadJob).

holds: what cupsd says the queue at URL holds: its queued-job-count and
printer-state (Get-Printer-Attributes), and its Get-Jobs list of the
not-completed jobs (ids, distinct ids, how many pending). Prints one line;
the first number is queued-job-count.
"""
import os
import re
import struct
import sys
import urllib.request
import uuid


def records(b):
    """An IPP message as its 8-byte header and (tag, name, value) records."""
    out, i = [], 8
    while i < len(b):
        t = b[i]
        i += 1
        if t < 0x10:  # a delimiter: begins a group, or ends the attributes
            out.append((t, None, None))
            if t == 3:
                break
            continue
        k = struct.unpack('>H', b[i:i + 2])[0]
        name = b[i + 2:i + 2 + k]
        i += 2 + k
        k = struct.unpack('>H', b[i:i + 2])[0]
        v = b[i + 2:i + 2 + k]
        i += 2 + k
        out.append((t, name, v))
    return b[:8], out


def encode(head, recs):
    b = bytearray(head)
    for t, name, v in recs:
        b.append(t)
        if name is not None:
            b += struct.pack('>H', len(name)) + name + struct.pack('>H', len(v)) + v
    return bytes(b)


def write(path, data, like):
    """Writes a file with the owner and mode of `like` (an os.stat result)."""
    with open(path, 'wb') as f:
        f.write(data)
    os.chown(path, like.st_uid, like.st_gid)
    os.chmod(path, like.st_mode & 0o777)


def fill(root, queue, n):
    spool, cache = f'{root}/spool', f'{root}/cache/job.cache'
    text = open(cache).read()
    entries = re.findall(r'<Job (\d+)>\n(.*?)</Job>\n', text, re.S)
    pending = [int(i) for i, e in entries
               if re.search(rf'^Destination {re.escape(queue)}$', e, re.M) and re.search(r'^State 3$', e, re.M)]
    if not pending:
        sys.exit(f'no pending job of {queue} in {cache}: give cupsd a real one first')
    last = max(pending)
    entry = next(e for i, e in entries if int(i) == last)
    first = int(re.search(r'^NextJobId (\d+)$', text, re.M).group(1))
    head, template = records(open(f'{spool}/c{last:05d}', 'rb').read())
    doc = open(f'{spool}/d{last:05d}-001', 'rb').read()
    cst, dst = os.stat(f'{spool}/c{last:05d}'), os.stat(f'{spool}/d{last:05d}-001')
    new = {
        b'job-id': lambda i: struct.pack('>i', i),
        b'job-uuid': lambda i: f'urn:uuid:{uuid.uuid4()}'.encode(),
        b'job-name': lambda i: f'backlog-{i}'.encode(),
    }
    for i in range(first, first + n):
        recs = [(t, k, new[k](i) if k in new else v) for t, k, v in template]
        write(f'{spool}/c{i:05d}', encode(head, recs), cst)
        write(f'{spool}/d{i:05d}-001', doc, dst)
    text = re.sub(r'^NextJobId \d+$', f'NextJobId {first + n}', text, flags=re.M)
    text += ''.join(f'<Job {i}>\n{entry}</Job>\n' for i in range(first, first + n))
    write(cache + '.new', text.encode(), os.stat(cache))
    os.replace(cache + '.new', cache)


def attr(tag, name, v):
    return bytes([tag]) + struct.pack('>H', len(name)) + name.encode() + struct.pack('>H', len(v)) + v


def ask(url, op, extra):
    """One IPP request to url; its groups as (tag, {name: first value})."""
    b = b'\x02\x00' + struct.pack('>Hi', op, 1) + b'\x01' + attr(0x47, 'attributes-charset', b'utf-8')
    b += attr(0x48, 'attributes-natural-language', b'en')
    b += attr(0x45, 'printer-uri', url.replace('http', 'ipp', 1).encode())
    b += attr(0x42, 'requesting-user-name', b'bench') + extra + b'\x03'
    req = urllib.request.Request(url, b, {'Content-Type': 'application/ipp'})
    r = urllib.request.urlopen(req, timeout=600).read()
    code = struct.unpack('>H', r[2:4])[0]
    if code >= 0x100:
        sys.exit(f'{url}: IPP status {code:#06x}')
    groups, name = [], None
    for t, k, v in records(r)[1]:
        if k is None:
            if t != 3:
                groups.append((t, {}))
            continue
        name = k.decode() or name  # an empty name: another value of the last
        groups[-1][1].setdefault(name, v)
    return groups


def holds(url):
    num = lambda g, k: struct.unpack('>i', g[k])[0]
    want = attr(0x44, 'requested-attributes', b'queued-job-count') + attr(0x44, '', b'printer-state')
    (p,) = [g for t, g in ask(url, 0x0b, want) if t == 4]
    want = attr(0x44, 'requested-attributes', b'job-id') + attr(0x44, '', b'job-state')
    jobs = [g for t, g in ask(url, 0x0a, want) if t == 2]
    ids = {num(g, 'job-id') for g in jobs}
    pending = sum(num(g, 'job-state') == 3 for g in jobs)
    print(f"{num(p, 'queued-job-count')} queued (queued-job-count; printer-state {num(p, 'printer-state')}); "
          f"Get-Jobs lists {len(jobs)} jobs, {len(ids)} distinct ids, {pending} pending")


if __name__ == '__main__':
    if sys.argv[1:2] == ['fill'] and len(sys.argv) == 5:
        fill(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1:2] == ['holds'] and len(sys.argv) == 3:
        holds(sys.argv[2])
    else:
        sys.exit(__doc__)
