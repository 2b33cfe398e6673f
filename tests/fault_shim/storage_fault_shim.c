// storage_fault_shim: an LD_PRELOAD library for the test suite that injects storage faults below
// SQLite, the way a failing disk and Linux's page cache behave. Test-only: never installed.
//
// It acts on the node's database file (a path ending in ".db") and its WAL ("-wal") only, and
// only while the file named by CASEWAY_SHIM_TRIGGER exists, so that a test chooses when faults
// start and stop. CASEWAY_SHIM_MODE selects the fault:
//
//   eio_once    the next fsync/fdatasync of the database file fails with EIO, and the pages
//               written since the last successful sync are dropped (the file is put back as it
//               was at that sync: Linux marks unwritable pages clean and reports the error once);
//               later syncs succeed.
//   eio_always  every sync of the database file fails with EIO and drops the pages, until the
//               trigger file is removed.
//   enospc      every write to the database file or the WAL fails with ENOSPC.
//   short       every write to the database file or the WAL writes half its bytes (the caller
//               must write the rest), and every second one then fails with ENOSPC.
//
// Each fault injected is counted in the file CASEWAY_SHIM_TRIGGER ".hits" (one byte per fault),
// so that a test can wait until one happened.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

typedef ssize_t (*pwrite_fn)(int, const void*, size_t, off_t);
typedef ssize_t (*pread_fn)(int, void*, size_t, off_t);
typedef int (*sync_fn)(int);
typedef int (*ftruncate_fn)(int, off_t);

enum Target { kOther, kDb, kWal };

// One write to the database file since its last successful sync: what it overwrote.
struct Undo {
  off_t offset;
  size_t size;
  char* old;        // the bytes before the write (size bytes; fewer existed when it extended)
  size_t old_size;  // how many of them existed
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct Undo* undo = NULL;
static size_t undo_len = 0, undo_cap = 0;
static off_t size_at_sync = -1;  // the database file's size at its last successful sync
static int once_done = 0;
static unsigned short_count = 0;

static void* next(const char* name) { return dlsym(RTLD_NEXT, name); }

static enum Target target_of(int fd) {
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n <= 0) return kOther;
  path[n] = '\0';
  if (n > 3 && strcmp(path + n - 3, ".db") == 0) return kDb;
  if (n > 7 && strcmp(path + n - 7, ".db-wal") == 0) return kWal;
  return kOther;
}

static const char* mode(void) {
  const char* m = getenv("CASEWAY_SHIM_MODE");
  return m == NULL ? "" : m;
}

static int triggered(void) {
  const char* t = getenv("CASEWAY_SHIM_TRIGGER");
  struct stat st;
  return t != NULL && stat(t, &st) == 0;
}

static void count_hit(void) {
  const char* t = getenv("CASEWAY_SHIM_TRIGGER");
  if (t == NULL) return;
  char path[4096];
  snprintf(path, sizeof path, "%s.hits", t);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (fd >= 0) {
    ssize_t ignored = write(fd, "x", 1);
    (void)ignored;
    close(fd);
  }
}

static void clear_undo(void) {
  for (size_t i = 0; i < undo_len; ++i) free(undo[i].old);
  undo_len = 0;
}

// remember saves what a write to the database file is about to overwrite.
static void remember(int fd, off_t offset, size_t size) {
  if (size_at_sync < 0) {
    struct stat st;
    if (fstat(fd, &st) == 0) size_at_sync = st.st_size;
  }
  if (undo_len == undo_cap) {
    undo_cap = undo_cap == 0 ? 64 : undo_cap * 2;
    undo = realloc(undo, undo_cap * sizeof *undo);
  }
  struct Undo* u = &undo[undo_len++];
  u->offset = offset;
  u->size = size;
  u->old = malloc(size);
  ssize_t n = ((pread_fn)next("pread64"))(fd, u->old, size, offset);
  u->old_size = n < 0 ? 0 : (size_t)n;
}

// drop puts the database file back as it was at its last successful sync.
static void drop(int fd) {
  pwrite_fn real_pwrite = (pwrite_fn)next("pwrite64");
  for (size_t i = undo_len; i-- > 0;) {
    if (undo[i].old_size > 0) real_pwrite(fd, undo[i].old, undo[i].old_size, undo[i].offset);
  }
  if (size_at_sync >= 0) ((ftruncate_fn)next("ftruncate64"))(fd, size_at_sync);
  clear_undo();
}

static ssize_t do_pwrite(const char* name, int fd, const void* buf, size_t size, off_t offset) {
  pwrite_fn real = (pwrite_fn)next(name);
  enum Target t = target_of(fd);
  if (t == kOther) return real(fd, buf, size, offset);
  pthread_mutex_lock(&mu);
  if (triggered()) {
    const char* m = mode();
    int fail = strcmp(m, "enospc") == 0 || (strcmp(m, "short") == 0 && (short_count++ % 2) == 1);
    if (fail) {
      pthread_mutex_unlock(&mu);
      count_hit();
      errno = ENOSPC;
      return -1;
    }
    if (strcmp(m, "short") == 0 && size > 1) {
      size /= 2;
      count_hit();
    }
  }
  if (t == kDb) remember(fd, offset, size);
  ssize_t n = real(fd, buf, size, offset);
  pthread_mutex_unlock(&mu);
  return n;
}

static int do_sync(const char* name, int fd) {
  sync_fn real = (sync_fn)next(name);
  if (target_of(fd) != kDb) return real(fd);
  pthread_mutex_lock(&mu);
  const char* m = mode();
  int fail = triggered() && ((strcmp(m, "eio_once") == 0 && !once_done) ||
                             strcmp(m, "eio_always") == 0);
  if (fail) {
    once_done = 1;
    drop(fd);
    pthread_mutex_unlock(&mu);
    count_hit();
    errno = EIO;
    return -1;
  }
  int rc = real(fd);
  if (rc == 0) {
    clear_undo();
    struct stat st;
    if (fstat(fd, &st) == 0) size_at_sync = st.st_size;
  }
  pthread_mutex_unlock(&mu);
  return rc;
}

ssize_t pwrite(int fd, const void* buf, size_t size, off_t offset) {
  return do_pwrite("pwrite", fd, buf, size, offset);
}
ssize_t pwrite64(int fd, const void* buf, size_t size, off_t offset) {
  return do_pwrite("pwrite64", fd, buf, size, offset);
}
int fsync(int fd) { return do_sync("fsync", fd); }
int fdatasync(int fd) { return do_sync("fdatasync", fd); }
