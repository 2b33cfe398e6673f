// Signer: how the store has a message signed that it completes inside a write transaction.
#ifndef CASEWAY_SERVER_STORE_SIGNER_H_
#define CASEWAY_SERVER_STORE_SIGNER_H_

#include <functional>
#include <string>

#include "absl/strings/string_view.h"

namespace caseway::server {

// A Signer returns the signature of `message` under this node's key (the one current when the
// caller made the Signer: a rotation applies from the next call) and the context of
// what the message is (a receipt, a query answer, the sharing policy). The layer that owns the
// key and knows what it signs (server/exchange/, node.cc) binds both and passes one per call:
// the store holds no key. It calls the signer inside the transaction that fixes the message (a
// receipt names its own log index), so what is signed and what is logged are one commit.
using Signer = std::function<std::string(absl::string_view message)>;

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_SIGNER_H_
