// Small helpers for absl::Status propagation (Debian's Abseil 20220623 has none).
#ifndef CASEWAY_COMMON_STATUS_MACROS_H_
#define CASEWAY_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CASEWAY_CONCAT_INNER_(a, b) a##b
#define CASEWAY_CONCAT_(a, b) CASEWAY_CONCAT_INNER_(a, b)

// RETURN_IF_ERROR(expr) returns the status of `expr` from the enclosing function if it is not OK.
#define RETURN_IF_ERROR(expr)                       \
  do {                                              \
    ::absl::Status caseway_status_ = (expr);        \
    if (!caseway_status_.ok()) return caseway_status_; \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr) evaluates the StatusOr `expr`; on error returns its status,
// otherwise moves the value into `lhs` (which may be a declaration).
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(CASEWAY_CONCAT_(caseway_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()

#endif  // CASEWAY_COMMON_STATUS_MACROS_H_
