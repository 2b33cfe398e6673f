// Merkle tree math of RFC 9162 §2.1 (SHA-256): hashing, the incremental frontier, proof
// generation over any subtree-hash source, and strict proof verification.
#ifndef CASEWAY_COMMON_MERKLE_H_
#define CASEWAY_COMMON_MERKLE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace caseway::common {

constexpr size_t kHashSize = 32;
constexpr size_t kMaxProofHashes = 64;

// LeafHash = SHA-256(0x00 || entry); NodeHash = SHA-256(0x01 || left || right).
std::string LeafHash(absl::string_view entry);
std::string NodeHash(absl::string_view left, absl::string_view right);
// EmptyRoot = SHA-256("").
std::string EmptyRoot();

// MerkleFrontier keeps the roots of the perfect subtrees that make up a tree of `size` leaves
// (one per set bit of size), so that appending and the root cost O(log n) without a rebuild.
// Thread-compatible; cheap to copy (at most 64 hashes).
class MerkleFrontier {
 public:
  // NodeSink receives every perfect subtree root completed by an append: `level` >= 1 is the
  // height (2^level leaves) and `index` its position among subtrees of that height.
  using NodeSink = std::function<void(int level, uint64_t index, const std::string& hash)>;

  MerkleFrontier() = default;
  // FromSubtrees rebuilds a frontier from the perfect subtree roots of a tree of `size`, left to
  // right (as returned by PerfectSubtrees). INVALID_ARGUMENT when the count does not match.
  static absl::StatusOr<MerkleFrontier> FromSubtrees(uint64_t size,
                                                     std::vector<std::string> hashes);

  void Append(const std::string& leaf_hash, const NodeSink& sink = nullptr);
  std::string Root() const;
  uint64_t size() const { return size_; }

 private:
  uint64_t size_ = 0;
  std::vector<std::string> hashes_;  // left to right, heights strictly decreasing
};

// PerfectSubtree is [begin, end) with end - begin a power of two and begin a multiple of it.
struct PerfectSubtree {
  int level;
  uint64_t index;
  uint64_t begin() const { return index << level; }
};
// PerfectSubtrees lists the perfect subtrees that make up a tree of `size`, left to right.
std::vector<PerfectSubtree> PerfectSubtrees(uint64_t size);

// SubtreeHashFn returns MTH(D[begin:end]) of the log's leaves; REQUIRES begin < end.
using SubtreeHashFn = std::function<absl::StatusOr<std::string>(uint64_t begin, uint64_t end)>;

// SubtreeHash computes MTH(D[begin:end]) from `perfect`, which must answer only for perfect,
// aligned subtrees (stored nodes), splitting everything else as RFC 9162 does.
absl::StatusOr<std::string> SubtreeHash(uint64_t begin, uint64_t end, const SubtreeHashFn& perfect);

// LeafTree holds leaf hashes in memory and answers subtree hashes (perfect subtrees memoized),
// so that an auditor can compute roots and proofs itself instead of trusting a node's.
// Thread-compatible.
class LeafTree {
 public:
  void Add(std::string leaf_hash) { leaves_.push_back(std::move(leaf_hash)); }
  uint64_t size() const { return leaves_.size(); }
  // Root of the first `size` leaves (EmptyRoot for 0). REQUIRES size <= this->size().
  std::string Root(uint64_t size);
  // Subtree is a SubtreeHashFn over these leaves.
  SubtreeHashFn Subtree();

 private:
  std::string Perfect(uint64_t begin, uint64_t end);
  std::vector<std::string> leaves_;
  std::map<std::pair<int, uint64_t>, std::string> memo_;
};

// InclusionProof is PATH(index, D[0:size]) of RFC 9162 §2.1.3.1. INVALID_ARGUMENT when
// index >= size.
absl::StatusOr<std::vector<std::string>> InclusionProof(uint64_t index, uint64_t size,
                                                        const SubtreeHashFn& subtree);

// ConsistencyProof is PROOF(first, D[0:second]) of §2.1.4.1; empty when first == 0 or
// first == second. INVALID_ARGUMENT when first > second.
absl::StatusOr<std::vector<std::string>> ConsistencyProof(uint64_t first, uint64_t second,
                                                          const SubtreeHashFn& subtree);

// VerifyInclusion checks a proof per §2.1.3.2. Strict: INVALID_ARGUMENT for hashes that are not
// 32 bytes, more than 64 proof hashes, index >= size, or a proof of the wrong length;
// FAILED_PRECONDITION when the computed root differs from `root`.
absl::Status VerifyInclusion(uint64_t index, uint64_t size, absl::string_view leaf_hash,
                             const std::vector<std::string>& proof, absl::string_view root);

// VerifyConsistency checks a proof per §2.1.4.2. first == second needs an empty proof and equal
// roots; first == 0 needs an empty proof; first > second is INVALID_ARGUMENT. Strict as above.
absl::Status VerifyConsistency(uint64_t first, uint64_t second,
                               const std::vector<std::string>& proof, absl::string_view root1,
                               absl::string_view root2);

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_MERKLE_H_
