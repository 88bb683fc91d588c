#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <grpcpp/impl/channel_interface.h>
#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/security/tls.h"
#include "kiq/v1/membership.grpc.pb.h"
#include "kiq/v1/membership.pb.h"
#include "kiq/v1/query.grpc.pb.h"
#include "kiq/v1/query.pb.h"

namespace kiq::client {

struct ClientOptions {
  // Deadline of each RPC; every page of a multi-page scan gets a fresh one, so a long scan is
  // not cut short. absl::InfiniteDuration() means no deadline.
  absl::Duration timeout = absl::Seconds(10);
  // Stale reads: let a standby replica answer a partition whose owner cannot (within
  // max_lag_records, 0: any); answers list the partitions read so (standby_reads).
  bool allow_stale = false;
  int64_t max_lag_records = 0;
  // TLS (tls.enabled): the server's certificate is verified against tls.ca_file (empty: the
  // system's roots) and the target's host; with tls.cert_file/key_file the client presents
  // them (mTLS). Read once, by Connect.
  security::ClientTls tls;
  // Bearer token sent with every call ("authorization: Bearer <token>") to servers started
  // with --auth-token-file; empty: none.
  std::string token;
};

// How ForEachRangePage / ForEachAllPage walk the pages of a scan.
struct ScanOptions {
  // Entries per RPC; 0 lets the server choose (AIP-158).
  int32_t page_size = 0;
  // Where to start: empty for the beginning, else a next_page_token from an earlier scan.
  std::string page_token;
  // Stop after this many entries; 0 means no limit.
  int64_t limit = 0;
};

// Called once per page, in key order. Return false to stop after this page.
using PageCallback = std::function<bool(const kiq::v1::ScanResponse& page)>;

// The one place where a grpc::Status from the server becomes an absl::Status: same code, the
// message prefixed with what we were doing (`get store=orders key="a": <server message>`).
absl::Status FromGrpcStatus(const grpc::Status& status, std::string_view doing);

// What each call says it was doing in its errors. Public so that callers (kiqctl) can tell the
// prefix apart from the server's message.
std::string DescribeGet(std::string_view store, std::string_view key);
// "get-many store=orders keys=64 (first "a")".
std::string DescribeGetMany(std::string_view store, const std::vector<std::string>& keys);
std::string DescribeRange(std::string_view store, std::string_view from, std::string_view to);
std::string DescribeAll(std::string_view store);
std::string DescribeCount(std::string_view store);
std::string DescribeWindowFetch(std::string_view store, std::string_view key);
std::string DescribeSubscribe(std::string_view store);
// The metadata calls are named like kiqctl's `metadata [STORE [KEY]]`.
std::string DescribeAllNodes();
std::string DescribeNodesForStore(std::string_view store);
std::string DescribeNodeForKey(std::string_view store, std::string_view key);

// A client of kiq.v1.QueryService (any kiq node or kiq-router) and kiq.v1.MetadataService (where
// the server offers it; elsewhere the metadata calls fail UNIMPLEMENTED).
//
// Thread-safe: every method is const and may be called concurrently; the gRPC channel and stubs
// are safe for concurrent use and the client holds no other state. The channel is shared with
// whoever created it; it reconnects by itself, so one Client can live for the whole process.
//
// Keys and bounds are bytes: valid UTF-8 goes in the request's `key` / `from` / `to` fields,
// anything else in `key_bytes` / `from_bytes` / `to_bytes`. Errors are the server's status code
// with a message naming the call (see FromGrpcStatus).
class Client {
 public:
  // A client of `target` ("host:port", or any gRPC target URI) over a plaintext channel, or TLS
  // as options.tls says. Does not wait for the server: gRPC channels connect lazily and
  // reconnect, and the first call's error names what was being done. INVALID_ARGUMENT for an
  // empty target, a timeout <= 0 or TLS files that cannot be used (naming the file and why).
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const std::string& target,
                                                         ClientOptions options = {});

  // A client on an existing channel (e.g. a server's in-process channel).
  Client(std::shared_ptr<grpc::ChannelInterface> channel, ClientOptions options);

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // The value of `key`; a missing key is found=false, an unknown store NOT_FOUND.
  absl::StatusOr<kiq::v1::GetResponse> Get(std::string_view store, std::string_view key) const;

  // The values of several keys in one call: results[i] answers keys[i] (found or not), in
  // order, duplicates included. All or nothing: an owner that cannot answer fails the call.
  // Keys must be UTF-8 (GetMany has no key_bytes); INVALID_ARGUMENT otherwise, or for none or
  // more than the server's limit (1024).
  absl::StatusOr<kiq::v1::GetManyResponse> GetMany(std::string_view store,
                                                   const std::vector<std::string>& keys) const;
  // One page of the entries with from <= key <= to (an empty bound is open).
  absl::StatusOr<kiq::v1::ScanResponse> Range(std::string_view store, std::string_view from,
                                              std::string_view to, int32_t page_size = 0,
                                              std::string_view page_token = {}) const;

  // One page of every entry of `store`.
  absl::StatusOr<kiq::v1::ScanResponse> All(std::string_view store, int32_t page_size = 0,
                                            std::string_view page_token = {}) const;

  // The windows of `key` in a windowed store whose start is in [time_from, time_to] (ms since
  // the epoch; time_to 0: no upper bound), oldest first.
  absl::StatusOr<kiq::v1::WindowFetchResponse> WindowFetch(std::string_view store,
                                                           std::string_view key, int64_t time_from,
                                                           int64_t time_to) const;

  // The number of entries of `store`.
  absl::StatusOr<kiq::v1::CountResponse> Count(std::string_view store) const;

  // Subscribe (push query): calls `on_event` for each event as it arrives until the stream
  // ends or `on_event` returns false (then the call is cancelled and OK is returned). Streams
  // have no deadline, but connecting has: the timeout option bounds the wait for the channel
  // to be ready (DEADLINE_EXCEEDED past it; a server that accepts TCP and never answers would
  // otherwise hold it for gRPC's 20 s connect deadline; a refused connection is UNAVAILABLE at
  // once, as for unary calls). Returns the stream's final status:
  // RESOURCE_EXHAUSTED (too slow), ABORTED (partitions moved), NOT_FOUND (unknown store)...
  absl::Status Subscribe(
      const kiq::v1::SubscribeRequest& request,
      const std::function<bool(const kiq::v1::SubscribeResponse&)>& on_event) const;
  // Kafka Streams' allMetadata(): every live node, with its endpoint, stores, owned partitions
  // (and their states) and lease.
  absl::StatusOr<kiq::v1::NodesResponse> AllNodes() const;

  // Kafka Streams' allMetadataForStore(): the live nodes hosting `store`; NOT_FOUND for an
  // unknown store.
  absl::StatusOr<kiq::v1::NodesResponse> NodesForStore(std::string_view store) const;

  // Kafka Streams' queryMetadataForKey(): the partition of `key` in `store` and the node that
  // owns it. No live owner is not an error: the response's owner then has an empty node_id.
  absl::StatusOr<kiq::v1::NodeForKeyResponse> NodeForKey(std::string_view store,
                                                         std::string_view key) const;

  // Follows next_page_token from options.page_token through every page of Range (or All),
  // calling `on_page` for each, until the last page, options.limit entries, or `on_page`
  // returning false. Returns the token to resume from: empty when the scan reached the end.
  //
  // With a limit, the last request asks for just the entries still wanted, so the returned
  // token resumes exactly after the last entry handed to `on_page`. (A server that ignores
  // page_size gets its page truncated to the limit; the token then skips the cut entries.)
  absl::StatusOr<std::string> ForEachRangePage(std::string_view store, std::string_view from,
                                               std::string_view to, const ScanOptions& options,
                                               const PageCallback& on_page) const;
  absl::StatusOr<std::string> ForEachAllPage(std::string_view store, const ScanOptions& options,
                                             const PageCallback& on_page) const;

 private:
  using PageFetcher = std::function<absl::StatusOr<kiq::v1::ScanResponse>(
      int32_t page_size, const std::string& page_token)>;

  // The deadline and other per-call settings.
  void PrepareContext(grpc::ClientContext* context) const;

  // One unary RPC: `rpc(context, response)` with the per-call settings, its status converted
  // (FromGrpcStatus) with `doing`. Defined in client.cc, the only place that uses it.
  template <typename Response, typename Rpc>
  absl::StatusOr<Response> CallUnary(std::string_view doing, const Rpc& rpc) const;

  // `doing` names the scan in errors found here rather than by the server.
  static absl::StatusOr<std::string> ForEachPage(const PageFetcher& fetch, std::string_view doing,
                                                 const ScanOptions& options,
                                                 const PageCallback& on_page);

  // Waits, up to the timeout, for the channel to be ready: DEADLINE_EXCEEDED past it,
  // UNAVAILABLE at once if the connection is refused; `doing` starts the message.
  absl::Status AwaitConnected(std::string_view doing) const;

  const ClientOptions options_;
  const std::shared_ptr<grpc::ChannelInterface> channel_;
  const std::unique_ptr<kiq::v1::QueryService::Stub> stub_;
  const std::unique_ptr<kiq::v1::MetadataService::Stub> metadata_stub_;
};

}  // namespace kiq::client
