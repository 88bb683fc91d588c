#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kiq/v1/topology.pb.h"

namespace kiq {

// Loading the topology file: what a kiq application materializes. A bad file must stop the
// node at start-up with the file, the field path and the reason, e.g.
//   orders.yaml: stores[1].source: unknown topic "ordrs" (declared sources: customers, orders)
// rather than surface later as a store that never fills. All functions are thread-safe (they
// share no state).

// Parses a YAML or JSON topology (YAML includes JSON), validates it with ValidateTopology and
// fills in defaults, so that callers never see FORMAT_UNSPECIFIED or PARTITIONER_UNSPECIFIED
// (they become FORMAT_STRING and PARTITIONER_MURMUR2). Errors are InvalidArgument; each line
// of the message starts with `source_name` (the file path, for the user), then the field path
// or, for YAML syntax errors, the line and column. All validation problems are reported at
// once, one per line.
absl::StatusOr<kiq::v1::Topology> ParseTopology(std::string_view text,
                                                std::string_view source_name);

// Reads the topology file at `path` and parses it with ParseTopology. A file that cannot be
// read gives the status for its errno (NotFound when missing) naming the path.
absl::StatusOr<kiq::v1::Topology> LoadTopologyFile(const std::string& path);

// Checks what the schema cannot express: required fields, Kafka naming rules, unique names and
// the references from stores to sources. UNSPECIFIED formats and partitioners are accepted
// (they mean the defaults). Errors are InvalidArgument, "<field path>: <reason>", one line per
// problem.
absl::Status ValidateTopology(const kiq::v1::Topology& topology);

}  // namespace kiq
