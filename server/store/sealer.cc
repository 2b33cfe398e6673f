#include "server/store/sealer.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/digest.h"

namespace caseway::server {
namespace {

constexpr unsigned char kMagic = 0xCF;  // wire type 7: no serialized message starts with it
constexpr unsigned char kFormat = 0x01;
constexpr size_t kHeader = 6;
constexpr size_t kNonce = 12;
constexpr size_t kTag = 16;
constexpr size_t kKeyBytes = 32;

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

const EVP_CIPHER* Cipher() {
  static const EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return cipher;
}

unsigned char* U(std::string& s, size_t at = 0) { return reinterpret_cast<unsigned char*>(&s[at]); }
const unsigned char* U(absl::string_view s, size_t at = 0) {
  return reinterpret_cast<const unsigned char*>(s.data() + at);
}

absl::Status Unsafe(const std::string& file, const std::string& why) {
  return absl::FailedPreconditionError(absl::StrCat(
      "storage.key_file: ", file, " ", why,
      " (the key file must belong to the node's user and be readable by nobody else: chmod 600)"));
}

// ReadKeyFile opens `file`, checks who may read it, and returns its text.
absl::StatusOr<std::string> ReadKeyFile(const std::string& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("storage.key_file: cannot open ", file, ": ", std::strerror(errno)));
  }
  struct stat st {};
  std::string text;
  absl::Status status;
  if (::fstat(fd, &st) != 0) {
    status = absl::FailedPreconditionError(absl::StrCat("storage.key_file: ", file, ": ", std::strerror(errno)));
  } else if (!S_ISREG(st.st_mode)) {
    status = Unsafe(file, "is not a regular file");
  } else if (st.st_uid != ::geteuid()) {
    status = Unsafe(file, absl::StrCat("belongs to uid ", st.st_uid, ", not to this user (uid ",
                                       ::geteuid(), ")"));
  } else if ((st.st_mode & 077) != 0) {
    status = Unsafe(file, absl::StrFormat("is open to group or others (mode %04o)",
                                                st.st_mode & 07777));
  } else {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
    if (n < 0) status = absl::FailedPreconditionError(absl::StrCat("storage.key_file: ", file, ": ", std::strerror(errno)));
  }
  ::close(fd);
  if (!status.ok()) return status;
  return text;
}

// ParseKeys reads the key lines of a key file's text into `keys`; returns the last id listed.
absl::StatusOr<uint32_t> ParseKeys(const std::string& file, absl::string_view text,
                                   std::map<uint32_t, std::string>* keys) {
  uint32_t last = 0;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = line.substr(0, line.find('#'));
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    auto bad = [&](const std::string& rule) {
      return absl::FailedPreconditionError(
          absl::StrCat("storage.key_file: ", file, " line ", line_no, ": ", rule));
    };
    uint32_t id = 0;
    if (f.size() != 2) return bad("expected \"<id> <64 hexadecimal digits>\"");
    if (!absl::SimpleAtoi(f[0], &id) || id == 0) return bad("the key id must be 1..4294967295");
    if (f[1].size() != 2 * kKeyBytes ||
        !std::all_of(f[1].begin(), f[1].end(), [](char c) { return absl::ascii_isxdigit(c); })) {
      return bad("the key must be 64 hexadecimal digits (256 bits)");
    }
    if (!keys->emplace(id, absl::HexStringToBytes(f[1])).second) {
      return bad(absl::StrCat("key id ", id, " is listed twice"));
    }
    last = id;
  }
  if (keys->empty()) {
    return absl::FailedPreconditionError(absl::StrCat("storage.key_file: ", file, " lists no key"));
  }
  return last;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Sealer>> Sealer::Load(const std::string& key_file) {
  if (Cipher() == nullptr) return absl::InternalError("OpenSSL has no AES-256-GCM");
  std::unique_ptr<Sealer> s(new Sealer());
  s->file_ = key_file;
  absl::StatusOr<std::string> text = ReadKeyFile(key_file);
  if (!text.ok()) return text.status();
  absl::StatusOr<uint32_t> current = ParseKeys(key_file, *text, &s->keys_);
  OPENSSL_cleanse(text->data(), text->size());
  if (!current.ok()) return current.status();
  s->current_ = *current;
  return s;
}

absl::StatusOr<uint32_t> Sealer::AddKey(const std::string& key_file) {
  std::map<uint32_t, std::string> keys;
  bool ends_in_newline = true;
  const bool exists = ::access(key_file.c_str(), F_OK) == 0;
  if (exists) {
    absl::StatusOr<std::string> read = ReadKeyFile(key_file);
    if (!read.ok()) return read.status();
    std::string text = std::move(*read);
    ends_in_newline = text.empty() || text.back() == '\n';
    absl::StatusOr<uint32_t> last = ParseKeys(key_file, text, &keys);
    OPENSSL_cleanse(text.data(), text.size());
    for (auto& [id, k] : keys) OPENSSL_cleanse(k.data(), k.size());
    if (!last.ok()) return last.status();
  }
  const uint32_t id = keys.empty() ? 1 : keys.rbegin()->first + 1;
  if (id == 0) return absl::FailedPreconditionError("storage.key_file: no key id is left");
  std::string key(kKeyBytes, '\0');
  if (RAND_bytes(U(key), static_cast<int>(key.size())) != 1) {
    return absl::InternalError("no random bytes for the key");
  }
  std::string line;
  if (!exists) {
    line = "# Caseway storage keys: \"<id> <key>\" per line. Every key opens; the last one seals.\n"
           "# Keep a copy offline (docs/operator.md, \"Encryption at rest\").\n";
  } else if (!ends_in_newline) {
    line = "\n";
  }
  absl::StrAppend(&line, id, " ", common::ToHex(key), "\n");
  OPENSSL_cleanse(key.data(), key.size());
  const int fd = ::open(key_file.c_str(),
                        O_WRONLY | O_APPEND | O_CLOEXEC | (exists ? 0 : O_CREAT | O_EXCL), 0600);
  absl::Status status;
  if (fd < 0) {
    status = absl::FailedPreconditionError(
        absl::StrCat("--to: cannot write ", key_file, ": ", std::strerror(errno)));
  } else {
    if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()) || ::fsync(fd) != 0) {
      status = absl::InternalError(absl::StrCat("--to: cannot write ", key_file, ": ", std::strerror(errno)));
    }
    ::close(fd);
  }
  OPENSSL_cleanse(line.data(), line.size());
  if (!status.ok()) return status;
  return id;
}

std::string Sealer::Seal(absl::string_view plain, absl::string_view context) const {
  if (plain.empty()) return std::string();
  std::string out(kHeader + kNonce + plain.size() + kTag, '\0');
  out[0] = static_cast<char>(kMagic);
  out[1] = static_cast<char>(kFormat);
  for (int i = 0; i < 4; ++i) out[2 + i] = static_cast<char>(current_ >> (24 - 8 * i));
  // RAND_bytes fails only when the DRBG cannot be seeded: nothing may be written unsealed then.
  if (RAND_bytes(U(out, kHeader), kNonce) != 1) std::abort();
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  const std::string& key = keys_.at(current_);
  bool ok = ctx && EVP_EncryptInit_ex2(ctx.get(), Cipher(), U(key), U(out, kHeader), nullptr) == 1 &&
            EVP_EncryptUpdate(ctx.get(), nullptr, &len, U(out), kHeader) == 1 &&
            EVP_EncryptUpdate(ctx.get(), nullptr, &len, U(context), static_cast<int>(context.size())) == 1 &&
            EVP_EncryptUpdate(ctx.get(), U(out, kHeader + kNonce), &len, U(plain),
                              static_cast<int>(plain.size())) == 1 &&
            EVP_EncryptFinal_ex(ctx.get(), nullptr, &len) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTag,
                                U(out, kHeader + kNonce + plain.size())) == 1;
  if (!ok) std::abort();  // AES-GCM with a valid key does not fail short of memory exhaustion
  return out;
}

uint32_t Sealer::KeyOf(absl::string_view stored) {
  if (stored.size() < kHeader + kNonce + kTag || static_cast<unsigned char>(stored[0]) != kMagic) {
    return 0;
  }
  uint32_t id = 0;
  for (int i = 0; i < 4; ++i) id = (id << 8) | static_cast<unsigned char>(stored[2 + i]);
  return id;
}

absl::StatusOr<std::string> Sealer::Open(absl::string_view stored, absl::string_view context) const {
  if (stored.empty() || static_cast<unsigned char>(stored[0]) != kMagic) return std::string(stored);
  const uint32_t id = KeyOf(stored);
  if (id == 0 || static_cast<unsigned char>(stored[1]) != kFormat) {
    return absl::DataLossError("a sealed value is truncated or of an unknown format");
  }
  auto key = keys_.find(id);
  if (key == keys_.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "a stored value is sealed with key ", id, ", which ", file_,
        " does not list (put the key back: docs/operator.md, \"Encryption at rest\")"));
  }
  const size_t n = stored.size() - kHeader - kNonce - kTag;
  std::string out(n, '\0');
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  std::string tag(stored.substr(kHeader + kNonce + n));
  const bool ok =
      ctx && EVP_DecryptInit_ex2(ctx.get(), Cipher(), U(key->second), U(stored, kHeader), nullptr) == 1 &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, U(stored), kHeader) == 1 &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, U(context), static_cast<int>(context.size())) == 1 &&
      EVP_DecryptUpdate(ctx.get(), n == 0 ? nullptr : U(out), &len, U(stored, kHeader + kNonce),
                        static_cast<int>(n)) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTag, U(tag)) == 1 &&
      EVP_DecryptFinal_ex(ctx.get(), nullptr, &len) == 1;
  if (!ok) {
    OPENSSL_cleanse(out.data(), out.size());
    return absl::DataLossError(absl::StrCat(
        "a sealed value does not open with key ", id, ": altered, or moved from another row"));
  }
  return out;
}

namespace {

// RowOf names the row of a context for an operator: "inbox 440305 17", "notice n-1", "answer
// 440305 <digest hex>" (ids, sequences and digests: no personal data).
std::string RowOf(absl::string_view context) {
  std::vector<std::string> parts = absl::StrSplit(context, absl::string_view("\0", 1));
  if (parts.size() == 3 && parts[0] == "answer") parts[2] = common::ToHex(parts[2]);
  return absl::StrJoin(parts, " ");
}

}  // namespace

absl::StatusOr<std::string> OpenBody(const Sealer* sealer, absl::string_view stored,
                                     absl::string_view context) {
  absl::StatusOr<std::string> out = std::string(stored);
  if (sealer != nullptr) {
    out = sealer->Open(stored, context);
  } else if (Sealer::KeyOf(stored) != 0) {
    out = absl::FailedPreconditionError(
        "a stored value is sealed (encrypted at rest) and storage.key_file is not set");
  }
  if (out.ok()) return out;
  return absl::Status(out.status().code(),
                      absl::StrCat("stored body of ", RowOf(context), ": ", out.status().message()));
}

std::string NoticeContext(absl::string_view notice_id) {
  return absl::StrCat("notice", absl::string_view("\0", 1), notice_id);
}

std::string InboxContext(absl::string_view origin, uint64_t channel_seq) {
  return absl::StrCat("inbox", absl::string_view("\0", 1), origin, absl::string_view("\0", 1),
                      channel_seq);
}

std::string AnswerContext(absl::string_view peer, absl::string_view digest) {
  return absl::StrCat("answer", absl::string_view("\0", 1), peer, absl::string_view("\0", 1),
                      digest);
}

std::string CopyContext(absl::string_view destination, absl::string_view notice_id) {
  return absl::StrCat("copy", absl::string_view("\0", 1), destination, absl::string_view("\0", 1),
                      "id", absl::string_view("\0", 1), notice_id);
}

std::string LegacyCopyContext(absl::string_view destination, uint64_t seq) {
  return absl::StrCat("copy", absl::string_view("\0", 1), destination, absl::string_view("\0", 1),
                      seq);
}

absl::StatusOr<std::string> OpenCopy(const Sealer* sealer, absl::string_view stored,
                                     absl::string_view destination, absl::string_view notice_id,
                                     uint64_t seq) {
  absl::StatusOr<std::string> plain = OpenBody(sealer, stored, CopyContext(destination, notice_id));
  if (absl::IsDataLoss(plain.status())) {
    absl::StatusOr<std::string> legacy =
        OpenBody(sealer, stored, LegacyCopyContext(destination, seq));
    if (legacy.ok()) return legacy;
  }
  return plain;
}

std::string MetaContext(absl::string_view key) {
  return absl::StrCat("meta", absl::string_view("\0", 1), key);
}

}  // namespace caseway::server
