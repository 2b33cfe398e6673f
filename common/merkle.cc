#include "common/merkle.h"

#include <openssl/evp.h>

#include <memory>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/status_macros.h"

namespace caseway::common {
namespace {

std::string HashWithPrefix(char prefix, absl::string_view a, absl::string_view b) {
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  struct CtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  thread_local std::unique_ptr<EVP_MD_CTX, CtxFree> owned(EVP_MD_CTX_new());  // freed with the thread
  EVP_MD_CTX* ctx = owned.get();
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestInit_ex(ctx, kSha256, nullptr) != 1 || EVP_DigestUpdate(ctx, &prefix, 1) != 1 ||
      EVP_DigestUpdate(ctx, a.data(), a.size()) != 1 ||
      EVP_DigestUpdate(ctx, b.data(), b.size()) != 1 || EVP_DigestFinal_ex(ctx, out, &len) != 1) {
    std::abort();  // a broken OpenSSL installation, not an input error
  }
  return std::string(reinterpret_cast<char*>(out), len);
}

// LargestPowerOfTwoBelow returns the largest power of two k with k < n. REQUIRES n > 1.
uint64_t LargestPowerOfTwoBelow(uint64_t n) {
  uint64_t k = 1;
  while (k << 1 < n) k <<= 1;
  return k;
}

absl::Status CheckHashes(const std::vector<std::string>& proof) {
  if (proof.size() > kMaxProofHashes) {
    return absl::InvalidArgumentError(
        absl::StrCat("proof: ", proof.size(), " hashes is more than ", kMaxProofHashes));
  }
  for (size_t i = 0; i < proof.size(); ++i) {
    if (proof[i].size() != kHashSize) {
      return absl::InvalidArgumentError(
          absl::StrCat("proof[", i, "]: ", proof[i].size(), " bytes, 32 expected"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckHash(absl::string_view what, absl::string_view h) {
  if (h.size() != kHashSize) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", h.size(), " bytes, 32 expected"));
  }
  return absl::OkStatus();
}

absl::Status Path(uint64_t m, uint64_t begin, uint64_t end, const SubtreeHashFn& subtree,
                  std::vector<std::string>& out) {
  uint64_t n = end - begin;
  if (n <= 1) return absl::OkStatus();
  uint64_t k = LargestPowerOfTwoBelow(n);
  if (m < k) {
    RETURN_IF_ERROR(Path(m, begin, begin + k, subtree, out));
    ASSIGN_OR_RETURN(out.emplace_back(), subtree(begin + k, end));
  } else {
    RETURN_IF_ERROR(Path(m - k, begin + k, end, subtree, out));
    ASSIGN_OR_RETURN(out.emplace_back(), subtree(begin, begin + k));
  }
  return absl::OkStatus();
}

absl::Status SubProof(uint64_t m, uint64_t begin, uint64_t end, bool b,
                      const SubtreeHashFn& subtree, std::vector<std::string>& out) {
  uint64_t n = end - begin;
  if (m == n) {
    if (!b) {
      ASSIGN_OR_RETURN(out.emplace_back(), subtree(begin, end));
    }
    return absl::OkStatus();
  }
  uint64_t k = LargestPowerOfTwoBelow(n);
  if (m <= k) {
    RETURN_IF_ERROR(SubProof(m, begin, begin + k, b, subtree, out));
    ASSIGN_OR_RETURN(out.emplace_back(), subtree(begin + k, end));
  } else {
    RETURN_IF_ERROR(SubProof(m - k, begin + k, end, false, subtree, out));
    ASSIGN_OR_RETURN(out.emplace_back(), subtree(begin, begin + k));
  }
  return absl::OkStatus();
}

}  // namespace

std::string LeafHash(absl::string_view entry) { return HashWithPrefix(0x00, entry, ""); }

std::string NodeHash(absl::string_view left, absl::string_view right) {
  return HashWithPrefix(0x01, left, right);
}

std::string EmptyRoot() { return Sha256(""); }

absl::StatusOr<MerkleFrontier> MerkleFrontier::FromSubtrees(uint64_t size,
                                                            std::vector<std::string> hashes) {
  if (hashes.size() != PerfectSubtrees(size).size()) {
    return absl::InvalidArgumentError(absl::StrCat("frontier: ", hashes.size(),
                                                   " subtree hashes for a tree of ", size));
  }
  MerkleFrontier f;
  f.size_ = size;
  f.hashes_ = std::move(hashes);
  return f;
}

void MerkleFrontier::Append(const std::string& leaf_hash, const NodeSink& sink) {
  hashes_.push_back(leaf_hash);
  // Merge equal-height subtrees: one per trailing one-bit of the old size.
  uint64_t index = size_;
  int level = 0;
  while (index & 1) {
    std::string right = std::move(hashes_.back());
    hashes_.pop_back();
    std::string merged = NodeHash(hashes_.back(), right);
    hashes_.back() = std::move(merged);
    ++level;
    index >>= 1;
    if (sink) sink(level, index, hashes_.back());
  }
  ++size_;
}

std::string MerkleFrontier::Root() const {
  if (hashes_.empty()) return EmptyRoot();
  std::string root = hashes_.back();
  for (size_t i = hashes_.size() - 1; i-- > 0;) root = NodeHash(hashes_[i], root);
  return root;
}

std::vector<PerfectSubtree> PerfectSubtrees(uint64_t size) {
  std::vector<PerfectSubtree> out;
  uint64_t begin = 0;
  for (int level = 63; level >= 0; --level) {
    uint64_t span = uint64_t{1} << level;
    if (size & span) {
      out.push_back({level, begin >> level});
      begin += span;
    }
  }
  return out;
}

absl::StatusOr<std::string> SubtreeHash(uint64_t begin, uint64_t end,
                                        const SubtreeHashFn& perfect) {
  uint64_t n = end - begin;
  if (n == 0) return absl::InvalidArgumentError("subtree: empty range");
  if ((n & (n - 1)) == 0 && begin % n == 0) return perfect(begin, end);
  uint64_t k = LargestPowerOfTwoBelow(n);
  ASSIGN_OR_RETURN(std::string left, SubtreeHash(begin, begin + k, perfect));
  ASSIGN_OR_RETURN(std::string right, SubtreeHash(begin + k, end, perfect));
  return NodeHash(left, right);
}

std::string LeafTree::Perfect(uint64_t begin, uint64_t end) {
  if (end - begin == 1) return leaves_[begin];
  int level = 0;
  while ((uint64_t{1} << level) < end - begin) ++level;
  auto key = std::make_pair(level, begin >> level);
  auto it = memo_.find(key);
  if (it != memo_.end()) return it->second;
  uint64_t half = (end - begin) / 2;
  std::string h = NodeHash(Perfect(begin, begin + half), Perfect(begin + half, end));
  memo_.emplace(key, h);
  return h;
}

SubtreeHashFn LeafTree::Subtree() {
  return [this](uint64_t b, uint64_t e) {
    return SubtreeHash(b, e, [this](uint64_t pb, uint64_t pe) -> absl::StatusOr<std::string> {
      if (pe > leaves_.size()) return absl::OutOfRangeError("subtree beyond the leaves");
      return Perfect(pb, pe);
    });
  };
}

std::string LeafTree::Root(uint64_t size) {
  if (size == 0) return EmptyRoot();
  auto r = Subtree()(0, size);
  return r.ok() ? *r : std::string();
}

absl::StatusOr<std::vector<std::string>> InclusionProof(uint64_t index, uint64_t size,
                                                        const SubtreeHashFn& subtree) {
  if (index >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("index: ", index, " is not below the tree size ", size));
  }
  std::vector<std::string> out;
  RETURN_IF_ERROR(Path(index, 0, size, subtree, out));
  return out;
}

absl::StatusOr<std::vector<std::string>> ConsistencyProof(uint64_t first, uint64_t second,
                                                          const SubtreeHashFn& subtree) {
  if (first > second) {
    return absl::InvalidArgumentError(
        absl::StrCat("first: ", first, " is greater than second ", second));
  }
  std::vector<std::string> out;
  if (first == 0 || first == second) return out;
  RETURN_IF_ERROR(SubProof(first, 0, second, true, subtree, out));
  return out;
}

absl::Status VerifyInclusion(uint64_t index, uint64_t size, absl::string_view leaf_hash,
                             const std::vector<std::string>& proof, absl::string_view root) {
  RETURN_IF_ERROR(CheckHash("leaf_hash", leaf_hash));
  RETURN_IF_ERROR(CheckHash("root", root));
  RETURN_IF_ERROR(CheckHashes(proof));
  if (index >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("index: ", index, " is not below the tree size ", size));
  }
  uint64_t fn = index, sn = size - 1;
  std::string r(leaf_hash);
  for (const std::string& p : proof) {
    if (sn == 0) return absl::InvalidArgumentError("proof: too many hashes");
    if ((fn & 1) || fn == sn) {
      r = NodeHash(p, r);
      if (!(fn & 1)) {
        while (!(fn & 1) && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = NodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return absl::InvalidArgumentError("proof: too few hashes");
  if (r != root) return absl::FailedPreconditionError("inclusion proof does not lead to the root");
  return absl::OkStatus();
}

absl::Status VerifyConsistency(uint64_t first, uint64_t second,
                               const std::vector<std::string>& proof, absl::string_view root1,
                               absl::string_view root2) {
  RETURN_IF_ERROR(CheckHash("root1", root1));
  RETURN_IF_ERROR(CheckHash("root2", root2));
  RETURN_IF_ERROR(CheckHashes(proof));
  if (first > second) {
    return absl::InvalidArgumentError(
        absl::StrCat("first: ", first, " is greater than second ", second));
  }
  if (first == second) {
    if (!proof.empty()) return absl::InvalidArgumentError("proof: must be empty for equal sizes");
    if (root1 != root2) return absl::FailedPreconditionError("roots of equal sizes differ");
    return absl::OkStatus();
  }
  if (first == 0) {
    if (!proof.empty()) return absl::InvalidArgumentError("proof: must be empty from size 0");
    return absl::OkStatus();
  }
  if (proof.empty()) return absl::InvalidArgumentError("proof: empty");
  std::vector<std::string> path;
  if ((first & (first - 1)) == 0) path.emplace_back(root1);
  path.insert(path.end(), proof.begin(), proof.end());
  uint64_t fn = first - 1, sn = second - 1;
  while (fn & 1) {
    fn >>= 1;
    sn >>= 1;
  }
  std::string fr = path[0], sr = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    const std::string& c = path[i];
    if (sn == 0) return absl::InvalidArgumentError("proof: too many hashes");
    if ((fn & 1) || fn == sn) {
      fr = NodeHash(c, fr);
      sr = NodeHash(c, sr);
      if (!(fn & 1)) {
        while (!(fn & 1) && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      sr = NodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return absl::InvalidArgumentError("proof: too few hashes");
  if (fr != root1) return absl::FailedPreconditionError("consistency proof does not match root1");
  if (sr != root2) return absl::FailedPreconditionError("consistency proof does not match root2");
  return absl::OkStatus();
}

}  // namespace caseway::common
