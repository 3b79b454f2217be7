/* The ZIP's members, each read once (media/package_verify/members.py): its SHA-256 and size, for the sealed index
 * and the evidence files alike, and the SM3 of an evidence file whose item carries one, in the same pass. In a
 * package sealed in SM2 too (one with the SM tree, `withSm3`) every member's SM3 is taken in that pass, since the
 * seal lists it: no file is read twice. A member whose bytes fail the ZIP's CRC is Damaged; a name the ZIP does not
 * hold is NoMember (Python's KeyError).
 */

class NoMember extends Error {}

class Members {
  constructor(file, entries, progress) {
    this.file = file;
    this.entries = entries;
    this.byName = new Map(entries.map((e) => [e.name, e]));  // the last of a name, as zipfile's getinfo
    this.hashes = new Map();  // name -> [SHA-256 hex, size, SM3 hex or null], or Damaged
    this.progress = progress;
    this.streamAbove = STREAM_ABOVE;
    this.withSm3 = false;  // hash every member with SM3 too, whoever asks first
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
    const [sha, size] = await this.hashed(name, false);
    return [sha, size];
  }

  /* [SHA-256 hex, size, SM3 hex] of a member, both hashes from one read; as `digest` otherwise. */
  async digests(name) {
    return this.hashed(name, true);
  }

  async hashed(name, withSm3) {
    withSm3 = withSm3 || this.withSm3;
    let found = this.hashes.get(name);
    if (found === undefined || (withSm3 && !(found instanceof Damaged) && found[2] === null)) {
      const entry = this.entry(name);
      // readMember stops at the declared size
      const hash = new MemberHash(this.streamAbove, entry.fileSize, withSm3);
      let done = 0;
      try {
        await readMember(this.file, entry, (chunk) => {
          hash.update(chunk);
          done += chunk.length;
          this.progress(name, done, entry.fileSize);
        });
        const [sha, sm] = await hash.digest();
        found = [hex(sha), hash.size, sm ? hex(sm) : null];
      } catch (error) {
        if (!(error instanceof Damaged)) { throw error; }
        found = error;
      }
      this.hashes.set(name, found);
    }
    if (found instanceof Damaged) { throw found; }
    return found;
  }

  /* A whole member (the manifest, the index); NoMember or Damaged as `digest`. */
  async read(name) {
    return readWhole(this.file, this.entry(name));
  }
}
