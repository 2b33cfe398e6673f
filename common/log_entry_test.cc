#include "common/log_entry.h"

#include <gtest/gtest.h>

#include "common/proto_bytes.h"

namespace caseway::common {
namespace {

v1::LogEntry Entry(uint64_t index) {
  v1::LogEntry e;
  e.set_version(1);
  e.set_index(index);
  e.set_kind(v1::LogEntry::KIND_PUBLISHED);
  e.set_notice_id("n-1");
  e.set_digest(std::string(32, 'd'));
  e.add_destinations("440305");
  e.add_sequences(3);
  return e;
}

TEST(LogEntryTest, AcceptsOnlyTheCanonicalEncodingOfItsOwnIndex) {
  const std::string bytes = DeterministicBytes(Entry(5));
  auto ok = ParseLogEntry(bytes, 5);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->sequences(0), 3u);
  // Another index, version or an unknown kind.
  EXPECT_FALSE(ParseLogEntry(bytes, 6).ok());
  v1::LogEntry v2 = Entry(5);
  v2.set_version(2);
  EXPECT_FALSE(ParseLogEntry(DeterministicBytes(v2), 5).ok());
  v1::LogEntry unspecified = Entry(5);
  unspecified.set_kind(v1::LogEntry::KIND_UNSPECIFIED);
  EXPECT_FALSE(ParseLogEntry(DeterministicBytes(unspecified), 5).ok());
  // The same fields in another order: parses, but is not the canonical encoding.
  v1::LogEntry tail;
  tail.set_notice_id("n-1");
  v1::LogEntry head = Entry(5);
  head.clear_notice_id();
  const std::string reordered = DeterministicBytes(head) + DeterministicBytes(tail);
  v1::LogEntry parsed;
  ASSERT_TRUE(parsed.ParseFromString(reordered));
  auto refused = ParseLogEntry(reordered, 5);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(std::string(refused.status().message()).find("canonical"), std::string::npos);
  // An unknown field (number 99, varint 1).
  EXPECT_FALSE(ParseLogEntry(bytes + std::string("\x98\x06\x01", 3), 5).ok());
  // Not a message at all.
  EXPECT_FALSE(ParseLogEntry("\xff\xff\xff", 5).ok());
}

}  // namespace
}  // namespace caseway::common
