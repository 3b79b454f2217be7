/* The ZIP's members, each read once (media/package_verify/members.py): its SHA-256 and size, for the sealed index
 * and the evidence files alike. A member whose bytes fail the ZIP's CRC is Damaged; a name the ZIP does not hold
 * is NoMember (Python's KeyError).
 */

class NoMember extends Error {}

class Members {
  constructor(file, entries, progress) {
    this.file = file;
    this.entries = entries;
    this.byName = new Map(entries.map((e) => [e.name, e]));  // the last of a name, as zipfile's getinfo
    this.digests = new Map();
    this.progress = progress;
    this.streamAbove = STREAM_ABOVE;
  }

  names() {
    return this.entries.map((e) => e.name);
  }

  entry(name) {
    if (!this.byName.has(name)) { throw new NoMember(name); }
    return this.byName.get(name);
  }

  /* [SHA-256 hex, size] of a member. */
  async digest(name) {
    if (!this.digests.has(name)) {
      const entry = this.entry(name);
      const hash = new MemberHash(this.streamAbove, entry.fileSize);  // readMember stops at the declared size
      let done = 0;
      try {
        await readMember(this.file, entry, (chunk) => {
          hash.update(chunk);
          done += chunk.length;
          this.progress(name, done, entry.fileSize);
        });
        this.digests.set(name, [hex(await hash.digest()), hash.size]);
      } catch (error) {
        if (!(error instanceof Damaged)) { throw error; }
        this.digests.set(name, error);
      }
    }
    const found = this.digests.get(name);
    if (found instanceof Damaged) { throw found; }
    return found;
  }

  /* A whole member (the manifest, the index); NoMember or Damaged as `digest`. */
  async read(name) {
    return readWhole(this.file, this.entry(name));
  }
}
