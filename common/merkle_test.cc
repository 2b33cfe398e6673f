#include "common/merkle.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/escaping.h"
#include "common/digest.h"

namespace caseway::common {
namespace {

namespace fs = std::filesystem;

std::string Shared() {
  const char* src = getenv("CASEWAY_SOURCE_DIR");
  return std::string(src ? src : CASEWAY_DEFAULT_SOURCE_DIR) + "/tests/testdata/merkle";
}

// InMemoryTree answers subtree hashes over leaves "leaf-0", "leaf-1", ... by direct computation.
struct InMemoryTree {
  std::vector<std::string> leaves;
  explicit InMemoryTree(uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) leaves.push_back(LeafHash("leaf-" + std::to_string(i)));
  }
  std::string Mth(uint64_t b, uint64_t e) const {
    if (e - b == 1) return leaves[b];
    uint64_t k = 1;
    while (k << 1 < e - b) k <<= 1;
    return NodeHash(Mth(b, b + k), Mth(b + k, e));
  }
  SubtreeHashFn Fn() const {
    return [this](uint64_t b, uint64_t e) -> absl::StatusOr<std::string> { return Mth(b, e); };
  }
  std::string Root(uint64_t n) const { return n == 0 ? EmptyRoot() : Mth(0, n); }
};

TEST(MerkleTest, EmptyRootIsSha256OfNothing) {
  EXPECT_EQ(ToHex(EmptyRoot()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(MerkleFrontier().Root(), EmptyRoot());
}

// RFC 9162 §2.1.5: the 7-leaf example with its named nodes and published proofs.
TEST(MerkleTest, LeafTreeComputesTheSameRootsAndProofs) {
  InMemoryTree reference(100);
  LeafTree tree;
  for (const auto& l : reference.leaves) tree.Add(l);
  for (uint64_t n : {1, 2, 3, 7, 64, 65, 100}) {
    EXPECT_EQ(tree.Root(n), reference.Root(n)) << n;
    EXPECT_EQ(*ConsistencyProof(n / 2, n, tree.Subtree()), *ConsistencyProof(n / 2, n, reference.Fn()));
    EXPECT_EQ(*InclusionProof(n - 1, n, tree.Subtree()), *InclusionProof(n - 1, n, reference.Fn()));
  }
}

TEST(MerkleTest, Rfc9162Section215Example) {
  std::vector<std::string> d;
  for (int i = 0; i < 7; ++i) d.push_back(LeafHash("d" + std::to_string(i)));
  const std::string &a = d[0], &b = d[1], &c = d[2], &dd = d[3], &e = d[4], &f = d[5], &j = d[6];
  std::string g = NodeHash(a, b), h = NodeHash(c, dd), i = NodeHash(e, f);
  std::string k = NodeHash(g, h), l = NodeHash(i, j), root = NodeHash(k, l);
  InMemoryTree t(0);
  t.leaves = d;
  EXPECT_EQ(t.Root(7), root);
  using V = std::vector<std::string>;
  EXPECT_EQ(*InclusionProof(0, 7, t.Fn()), (V{b, h, l}));
  EXPECT_EQ(*InclusionProof(3, 7, t.Fn()), (V{c, g, l}));
  EXPECT_EQ(*InclusionProof(4, 7, t.Fn()), (V{f, j, k}));
  EXPECT_EQ(*InclusionProof(6, 7, t.Fn()), (V{i, k}));
  EXPECT_EQ(*ConsistencyProof(3, 7, t.Fn()), (V{c, dd, g, l}));
  EXPECT_EQ(*ConsistencyProof(4, 7, t.Fn()), (V{l}));
  EXPECT_EQ(*ConsistencyProof(6, 7, t.Fn()), (V{i, j, k}));
  EXPECT_TRUE(VerifyConsistency(3, 7, V{c, dd, g, l}, NodeHash(g, c), root).ok());
  EXPECT_TRUE(VerifyInclusion(6, 7, j, V{i, k}, root).ok());
}

TEST(MerkleTest, FrontierMatchesDirectComputationAndReportsEveryPerfectNode) {
  for (uint64_t n = 0; n <= 130; ++n) {
    InMemoryTree t(n);
    MerkleFrontier f;
    int nodes = 0;
    for (uint64_t i = 0; i < n; ++i) {
      f.Append(t.leaves[i], [&](int level, uint64_t index, const std::string& hash) {
        ++nodes;
        uint64_t span = uint64_t{1} << level;
        EXPECT_EQ(hash, t.Mth(index * span, (index + 1) * span));
      });
    }
    EXPECT_EQ(f.Root(), t.Root(n)) << n;
    EXPECT_EQ(nodes, static_cast<int>(n - PerfectSubtrees(n).size())) << n;
    // Rebuilding from the perfect subtrees gives the same root.
    std::vector<std::string> subtrees;
    for (const auto& p : PerfectSubtrees(n)) {
      subtrees.push_back(t.Mth(p.begin(), p.begin() + (uint64_t{1} << p.level)));
    }
    auto rebuilt = MerkleFrontier::FromSubtrees(n, subtrees);
    ASSERT_TRUE(rebuilt.ok());
    EXPECT_EQ(rebuilt->Root(), t.Root(n));
  }
}

std::string FlipBit(std::string s, int bit) {
  s[bit / 8] ^= static_cast<char>(1 << (bit % 8));
  return s;
}

TEST(MerkleTest, InclusionProofsOfTreesOf1To130LeavesVerifyAndEveryMutationFails) {
  for (uint64_t n = 1; n <= 130; ++n) {
    InMemoryTree t(n);
    const std::string root = t.Root(n);
    for (uint64_t m = 0; m < n; ++m) {
      auto proof = InclusionProof(m, n, t.Fn());
      ASSERT_TRUE(proof.ok());
      ASSERT_TRUE(VerifyInclusion(m, n, t.leaves[m], *proof, root).ok()) << m << "/" << n;
      // SubtreeHash over perfect nodes gives the same proof.
      auto perfect_only = InclusionProof(m, n, [&](uint64_t b, uint64_t e) {
        return SubtreeHash(b, e, t.Fn());
      });
      ASSERT_EQ(*perfect_only, *proof);
      for (size_t i = 0; i < proof->size(); ++i) {
        auto bad = *proof;
        bad[i] = FlipBit(bad[i], static_cast<int>((m * 7 + i) % 256));
        EXPECT_FALSE(VerifyInclusion(m, n, t.leaves[m], bad, root).ok());
      }
      if (!proof->empty()) {
        auto dropped = *proof;
        dropped.pop_back();
        EXPECT_FALSE(VerifyInclusion(m, n, t.leaves[m], dropped, root).ok());
      }
      auto extra = *proof;
      extra.push_back(root);
      EXPECT_FALSE(VerifyInclusion(m, n, t.leaves[m], extra, root).ok());
      if (n > 1) {
        EXPECT_FALSE(VerifyInclusion((m + 1) % n, n, t.leaves[m], *proof, root).ok());
        EXPECT_FALSE(VerifyInclusion(m, n, t.leaves[(m + 1) % n], *proof, root).ok());
      }
      EXPECT_FALSE(VerifyInclusion(m, n, t.leaves[m], *proof, FlipBit(root, 3)).ok());
      // Not asserted: the same proof may verify for size n + 1 as well (RFC 9162 proofs do not
      // bind the size), which is why tree sizes come only from signed checkpoints.
    }
  }
}

TEST(MerkleTest, ConsistencyProofsOfTreesOf1To130LeavesVerifyAndEveryMutationFails) {
  InMemoryTree t(130);
  for (uint64_t n = 1; n <= 130; ++n) {
    const std::string root2 = t.Root(n);
    for (uint64_t m = 1; m <= n; ++m) {
      const std::string root1 = t.Root(m);
      auto proof = ConsistencyProof(m, n, t.Fn());
      ASSERT_TRUE(proof.ok());
      ASSERT_TRUE(VerifyConsistency(m, n, *proof, root1, root2).ok()) << m << "->" << n;
      if (m == n) continue;
      for (size_t i = 0; i < proof->size(); ++i) {
        auto bad = *proof;
        bad[i] = FlipBit(bad[i], static_cast<int>((m + n + i) % 256));
        EXPECT_FALSE(VerifyConsistency(m, n, bad, root1, root2).ok()) << m << "->" << n;
      }
      auto dropped = *proof;
      dropped.pop_back();
      EXPECT_FALSE(VerifyConsistency(m, n, dropped, root1, root2).ok());
      auto extra = *proof;
      extra.push_back(root1);
      EXPECT_FALSE(VerifyConsistency(m, n, extra, root1, root2).ok());
      EXPECT_FALSE(VerifyConsistency(m, n, *proof, root2, root1).ok()) << "swapped roots";
      if (m + 1 < n) EXPECT_FALSE(VerifyConsistency(m + 1, n, *proof, root1, root2).ok());
    }
  }
  EXPECT_FALSE(ConsistencyProof(5, 4, t.Fn()).ok());
}

// Reference vectors from tests/testdata/merkle (transparency-dev, Apache-2.0: see its LICENSE and README).
struct Vector {
  std::string path;
  google::protobuf::Struct json;
  bool short_hash = false;
  std::string Bytes(const std::string& field) {
    std::string out;
    absl::Base64Unescape(json.fields().at(field).string_value(), &out);
    if (out.size() != kHashSize) short_hash = true;
    return out;
  }
  std::vector<std::string> Proof() {
    std::vector<std::string> out;
    auto it = json.fields().find("proof");
    if (it == json.fields().end() || !it->second.has_list_value()) return out;
    for (const auto& v : it->second.list_value().values()) {
      std::string h;
      absl::Base64Unescape(v.string_value(), &h);
      if (h.size() != kHashSize) short_hash = true;
      out.push_back(h);
    }
    return out;
  }
  std::string text;
  // Num reads an integer field from the JSON text: values up to 2^64-1 do not fit a double.
  uint64_t Num(const std::string& field) {
    std::smatch m;
    EXPECT_TRUE(std::regex_search(text, m, std::regex("\"" + field + "\":\\s*([0-9]+)")))
        << path << ": " << field;
    return std::stoull(m[1]);
  }
  bool WantErr() { return json.fields().at("wantErr").bool_value(); }
};

std::vector<Vector> Load(const std::string& dir) {
  std::vector<Vector> out;
  for (const auto& entry : fs::recursive_directory_iterator(Shared() + "/" + dir)) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    std::stringstream ss;
    ss << in.rdbuf();
    Vector v;
    v.path = entry.path().string();
    v.text = ss.str();
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(ss.str(), &v.json).ok()) << v.path;
    out.push_back(std::move(v));
  }
  return out;
}

TEST(MerkleTest, EveryInclusionReferenceVector) {
  auto vectors = Load("inclusion");
  ASSERT_GT(vectors.size(), 50u);
  int rejected_short = 0;
  for (Vector& v : vectors) {
    std::string root = v.Bytes("root"), leaf = v.Bytes("leafHash");
    auto proof = v.Proof();
    absl::Status s = VerifyInclusion(v.Num("leafIdx"), v.Num("treeSize"), leaf, proof, root);
    if (v.short_hash) {
      EXPECT_FALSE(s.ok()) << v.path << ": hashes not 32 bytes long must be rejected";
      ++rejected_short;
    } else {
      EXPECT_EQ(!s.ok(), v.WantErr()) << v.path << ": " << s;
    }
  }
  RecordProperty("vectors", static_cast<int>(vectors.size()));
}

TEST(MerkleTest, EveryConsistencyReferenceVector) {
  auto vectors = Load("consistency");
  ASSERT_GT(vectors.size(), 50u);
  for (Vector& v : vectors) {
    std::string root1 = v.Bytes("root1"), root2 = v.Bytes("root2");
    auto proof = v.Proof();
    absl::Status s = VerifyConsistency(v.Num("size1"), v.Num("size2"), proof, root1, root2);
    if (v.short_hash) {
      EXPECT_FALSE(s.ok()) << v.path << ": hashes not 32 bytes long must be rejected";
    } else {
      EXPECT_EQ(!s.ok(), v.WantErr()) << v.path << ": " << s;
    }
  }
}

}  // namespace
}  // namespace caseway::common
