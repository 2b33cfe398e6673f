// Fuzz target: what a peer or an auditor is handed as signed data: a checkpoint note with its
// signatures and cosignatures, a log entry, a batch manifest and a receipt. Parsing and checking
// them never crashes; a forged signature never verifies.
#include <cstddef>
#include <cstdint>
#include <string>

#include "caseway/v1/exchange_log.pb.h"
#include "caseway/v1/peer_exchange.pb.h"
#include "common/log_entry.h"
#include "common/signing.h"

namespace {
// A fixed Ed25519 public key (32 bytes) no input can hold the private key of.
const std::string kKey(32, '\x42');
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  auto note = caseway::common::ParseNote(in);
  if (note.ok()) {
    (void)caseway::common::ParseCheckpointBody(note->body);
    if (caseway::common::VerifyNote(*note, "fed.test/node/360102", kKey).ok()) __builtin_trap();
    if (caseway::common::VerifyCosignature(*note, "fed.test/node/440305", kKey).ok()) {
      __builtin_trap();
    }
    (void)caseway::common::FormatNote(*note);
  }
  (void)caseway::common::ParseLogEntry(in, 7);
  caseway::v1::BatchManifest manifest;
  (void)manifest.ParseFromString(in);
  caseway::v1::Receipt receipt;
  (void)receipt.ParseFromString(in);
  if (caseway::common::VerifySignature(kKey, caseway::common::kReceiptContext, in, in).ok()) {
    __builtin_trap();
  }
  return 0;
}
