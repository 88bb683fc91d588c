#include "client/client.h"

#include <utility>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "absl/strings/str_cat.h"
#include "client/text.h"

namespace kiq::client {
namespace {

// gRPC and absl share the canonical status codes 0..16; anything else is UNKNOWN.
absl::StatusCode ToAbslCode(grpc::StatusCode code) {
  const int value = static_cast<int>(code);
  if (value < 0 || value > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::StatusCode::kUnknown;
  }
  return static_cast<absl::StatusCode>(value);
}

// Protobuf `string` fields must be UTF-8; other bytes go in the `bytes` twin of the field.
template <typename SetText, typename SetBytes>
void SetTextOrBytes(std::string_view value, SetText set_text, SetBytes set_bytes) {
  if (IsValidUtf8(value)) {
    set_text(std::string(value));
  } else {
    set_bytes(std::string(value));
  }
}

}  // namespace

absl::Status FromGrpcStatus(const grpc::Status& status, std::string_view doing) {
  if (status.ok()) return absl::OkStatus();
  // Debian's abseil has its own string_view, so std::string_view goes through std::string.
  std::string message(doing);
  if (!status.error_message().empty()) absl::StrAppend(&message, ": ", status.error_message());
  return absl::Status(ToAbslCode(status.error_code()), message);
}

std::string DescribeGet(std::string_view store, std::string_view key) {
  return absl::StrCat("get store=", EscapeForTerminal(store), " key=", QuoteForMessage(key));
}

std::string DescribeGetMany(std::string_view store, const std::vector<std::string>& keys) {
  std::string out =
      absl::StrCat("get-many store=", EscapeForTerminal(store), " keys=", keys.size());
  if (!keys.empty()) absl::StrAppend(&out, " (first ", QuoteForMessage(keys.front()), ")");
  return out;
}

std::string DescribeWindowFetch(std::string_view store, std::string_view key) {
  return absl::StrCat("window-fetch store=", EscapeForTerminal(store),
                      " key=", QuoteForMessage(key));
}

std::string DescribeRange(std::string_view store, std::string_view from, std::string_view to) {
  return absl::StrCat("range store=", EscapeForTerminal(store), " from=", QuoteForMessage(from),
                      " to=", QuoteForMessage(to));
}

std::string DescribeAll(std::string_view store) {
  return absl::StrCat("all store=", EscapeForTerminal(store));
}

std::string DescribeCount(std::string_view store) {
  return absl::StrCat("count store=", EscapeForTerminal(store));
}

std::string DescribeAllNodes() { return "metadata"; }

std::string DescribeNodesForStore(std::string_view store) {
  return absl::StrCat("metadata store=", EscapeForTerminal(store));
}

std::string DescribeNodeForKey(std::string_view store, std::string_view key) {
  return absl::StrCat("metadata store=", EscapeForTerminal(store), " key=", QuoteForMessage(key));
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const std::string& target,
                                                        ClientOptions options) {
  if (target.empty()) {
    return absl::InvalidArgumentError("connect: empty target (want host:port)");
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("connect to ", target,
                                                   ": timeout must be > 0, got ",
                                                   absl::FormatDuration(options.timeout)));
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      security::GrpcClientCredentials(options.tls);
  if (!credentials.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("connect to ", target, ": ", credentials.status().message()));
  }
  return std::make_unique<Client>(grpc::CreateChannel(target, *credentials), options);
}

Client::Client(std::shared_ptr<grpc::ChannelInterface> channel, ClientOptions options)
    : options_(options),
      channel_(channel),
      stub_(kiq::v1::QueryService::NewStub(channel)),
      metadata_stub_(kiq::v1::MetadataService::NewStub(channel)) {}

void Client::PrepareContext(grpc::ClientContext* context) const {
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
  if (options_.timeout != absl::InfiniteDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
  }
}

template <typename Response, typename Rpc>
absl::StatusOr<Response> Client::CallUnary(std::string_view doing, const Rpc& rpc) const {
  grpc::ClientContext context;
  PrepareContext(&context);
  Response response;
  absl::Status status = FromGrpcStatus(rpc(&context, &response), doing);
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<kiq::v1::GetResponse> Client::Get(std::string_view store,
                                                 std::string_view key) const {
  kiq::v1::GetRequest request;
  request.set_allow_stale(options_.allow_stale);
  request.set_max_lag_records(options_.max_lag_records);
  request.set_store(std::string(store));
  SetTextOrBytes(
      key, [&](std::string v) { request.set_key(std::move(v)); },
      [&](std::string v) { request.set_key_bytes(std::move(v)); });
  return CallUnary<kiq::v1::GetResponse>(
      DescribeGet(store, key), [&](grpc::ClientContext* context, kiq::v1::GetResponse* response) {
        return stub_->Get(context, request, response);
      });
}

absl::StatusOr<kiq::v1::GetManyResponse> Client::GetMany(
    std::string_view store, const std::vector<std::string>& keys) const {
  kiq::v1::GetManyRequest request;
  request.set_allow_stale(options_.allow_stale);
  request.set_max_lag_records(options_.max_lag_records);
  request.set_store(std::string(store));
  for (size_t i = 0; i < keys.size(); ++i) {
    // A proto3 string that is not UTF-8 would fail the whole call at serialization, unnamed.
    if (!IsValidUtf8(keys[i])) {
      return absl::InvalidArgumentError(absl::StrCat(DescribeGetMany(store, keys), ": key ", i, " ",
                                                     QuoteForMessage(keys[i]),
                                                     " is not UTF-8 (read it with get)"));
    }
    request.add_keys(keys[i]);
  }
  return CallUnary<kiq::v1::GetManyResponse>(
      DescribeGetMany(store, keys),
      [&](grpc::ClientContext* context, kiq::v1::GetManyResponse* response) {
        return stub_->GetMany(context, request, response);
      });
}

absl::StatusOr<kiq::v1::WindowFetchResponse> Client::WindowFetch(std::string_view store,
                                                                 std::string_view key,
                                                                 int64_t time_from,
                                                                 int64_t time_to) const {
  kiq::v1::WindowFetchRequest request;
  request.set_allow_stale(options_.allow_stale);
  request.set_max_lag_records(options_.max_lag_records);
  request.set_store(std::string(store));
  SetTextOrBytes(
      key, [&](std::string v) { request.set_key(std::move(v)); },
      [&](std::string v) { request.set_key_bytes(std::move(v)); });
  request.set_time_from(time_from);
  request.set_time_to(time_to);
  return CallUnary<kiq::v1::WindowFetchResponse>(
      DescribeWindowFetch(store, key),
      [&](grpc::ClientContext* context, kiq::v1::WindowFetchResponse* response) {
        return stub_->WindowFetch(context, request, response);
      });
}

absl::StatusOr<kiq::v1::ScanResponse> Client::Range(std::string_view store, std::string_view from,
                                                    std::string_view to, int32_t page_size,
                                                    std::string_view page_token) const {
  kiq::v1::RangeRequest request;
  request.set_allow_stale(options_.allow_stale);
  request.set_max_lag_records(options_.max_lag_records);
  request.set_store(std::string(store));
  SetTextOrBytes(
      from, [&](std::string v) { request.set_from(std::move(v)); },
      [&](std::string v) { request.set_from_bytes(std::move(v)); });
  SetTextOrBytes(
      to, [&](std::string v) { request.set_to(std::move(v)); },
      [&](std::string v) { request.set_to_bytes(std::move(v)); });
  request.set_page_size(page_size);
  request.set_page_token(std::string(page_token));
  return CallUnary<kiq::v1::ScanResponse>(
      DescribeRange(store, from, to),
      [&](grpc::ClientContext* context, kiq::v1::ScanResponse* response) {
        return stub_->Range(context, request, response);
      });
}

absl::StatusOr<kiq::v1::ScanResponse> Client::All(std::string_view store, int32_t page_size,
                                                  std::string_view page_token) const {
  kiq::v1::AllRequest request;
  request.set_allow_stale(options_.allow_stale);
  request.set_max_lag_records(options_.max_lag_records);
  request.set_store(std::string(store));
  request.set_page_size(page_size);
  request.set_page_token(std::string(page_token));
  return CallUnary<kiq::v1::ScanResponse>(
      DescribeAll(store), [&](grpc::ClientContext* context, kiq::v1::ScanResponse* response) {
        return stub_->All(context, request, response);
      });
}

absl::Status Client::AwaitConnected(std::string_view doing) const {
  const auto deadline = absl::ToChronoTime(absl::Now() + options_.timeout);
  grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    // As a unary call without wait-for-ready does: a refused connection fails at once.
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) {
      return absl::UnavailableError(absl::StrCat(std::string(doing), ": cannot connect to the server"));
    }
    if (!channel_->WaitForStateChange(state, deadline)) {
      return absl::DeadlineExceededError(
          absl::StrCat(std::string(doing), ": the server did not answer the connection within ",
                       absl::FormatDuration(options_.timeout), " (the timeout bounds connecting)"));
    }
    state = channel_->GetState(/*try_to_connect=*/true);
  }
  return absl::OkStatus();
}

std::string DescribeSubscribe(std::string_view store) {
  return absl::StrCat("subscribe store=", EscapeForTerminal(store));
}

absl::Status Client::Subscribe(
    const kiq::v1::SubscribeRequest& request,
    const std::function<bool(const kiq::v1::SubscribeResponse&)>& on_event) const {
  if (options_.timeout != absl::InfiniteDuration()) {
    absl::Status connected = AwaitConnected(DescribeSubscribe(request.store()));
    if (!connected.ok()) return connected;
  }
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<kiq::v1::SubscribeResponse>> reader =
      stub_->Subscribe(&context, request);
  kiq::v1::SubscribeResponse event;
  bool stopped = false;
  while (reader->Read(&event)) {
    if (!on_event(event)) {
      stopped = true;
      context.TryCancel();
      break;
    }
  }
  grpc::Status status = reader->Finish();
  if (stopped) return absl::OkStatus();
  return FromGrpcStatus(status, DescribeSubscribe(request.store()));
}

absl::StatusOr<kiq::v1::CountResponse> Client::Count(std::string_view store) const {
  kiq::v1::CountRequest request;
  request.set_allow_stale(options_.allow_stale);
  request.set_max_lag_records(options_.max_lag_records);
  request.set_store(std::string(store));
  return CallUnary<kiq::v1::CountResponse>(
      DescribeCount(store), [&](grpc::ClientContext* context, kiq::v1::CountResponse* response) {
        return stub_->Count(context, request, response);
      });
}

absl::StatusOr<kiq::v1::NodesResponse> Client::AllNodes() const {
  const kiq::v1::AllNodesRequest request;
  return CallUnary<kiq::v1::NodesResponse>(
      DescribeAllNodes(), [&](grpc::ClientContext* context, kiq::v1::NodesResponse* response) {
        return metadata_stub_->AllNodes(context, request, response);
      });
}

absl::StatusOr<kiq::v1::NodesResponse> Client::NodesForStore(std::string_view store) const {
  kiq::v1::NodesForStoreRequest request;
  request.set_store(std::string(store));
  return CallUnary<kiq::v1::NodesResponse>(
      DescribeNodesForStore(store),
      [&](grpc::ClientContext* context, kiq::v1::NodesResponse* response) {
        return metadata_stub_->NodesForStore(context, request, response);
      });
}

absl::StatusOr<kiq::v1::NodeForKeyResponse> Client::NodeForKey(std::string_view store,
                                                               std::string_view key) const {
  kiq::v1::NodeForKeyRequest request;
  request.set_store(std::string(store));
  SetTextOrBytes(
      key, [&](std::string v) { request.set_key(std::move(v)); },
      [&](std::string v) { request.set_key_bytes(std::move(v)); });
  return CallUnary<kiq::v1::NodeForKeyResponse>(
      DescribeNodeForKey(store, key),
      [&](grpc::ClientContext* context, kiq::v1::NodeForKeyResponse* response) {
        return metadata_stub_->NodeForKey(context, request, response);
      });
}

absl::StatusOr<std::string> Client::ForEachRangePage(std::string_view store, std::string_view from,
                                                     std::string_view to,
                                                     const ScanOptions& options,
                                                     const PageCallback& on_page) const {
  return ForEachPage(
      [&](int32_t page_size, const std::string& page_token) {
        return Range(store, from, to, page_size, page_token);
      },
      DescribeRange(store, from, to), options, on_page);
}

absl::StatusOr<std::string> Client::ForEachAllPage(std::string_view store,
                                                   const ScanOptions& options,
                                                   const PageCallback& on_page) const {
  return ForEachPage(
      [&](int32_t page_size, const std::string& page_token) {
        return All(store, page_size, page_token);
      },
      DescribeAll(store), options, on_page);
}

absl::StatusOr<std::string> Client::ForEachPage(const PageFetcher& fetch, std::string_view doing,
                                                const ScanOptions& options,
                                                const PageCallback& on_page) {
  // With a limit but no page size, pages are this big until the last one. It is the router's
  // default page size, and must stay within its maximum (5000), which it rejects rather than
  // coerces.
  constexpr int32_t kPageSizeWhenLimited = 100;
  if (options.page_size < 0 || options.limit < 0) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(doing), ": page_size (",
                                                   options.page_size, ") and limit (",
                                                   options.limit, ") must be >= 0"));
  }
  std::string token = options.page_token;
  int64_t remaining = options.limit;  // Meaningful only when options.limit > 0.
  while (true) {
    int32_t page_size = options.page_size;
    if (options.limit > 0) {
      const int32_t full = page_size > 0 ? page_size : kPageSizeWhenLimited;
      // Ask for no more than is still wanted, so the server's token resumes exactly there.
      page_size = remaining < full ? static_cast<int32_t>(remaining) : full;
    }
    absl::StatusOr<kiq::v1::ScanResponse> page = fetch(page_size, token);
    if (!page.ok()) return page.status();
    if (!page->next_page_token().empty() && page->next_page_token() == token) {
      // Following it would loop forever.
      return absl::InternalError(absl::StrCat(std::string(doing),
                                              ": the server answered page token \"", token,
                                              "\" with the same next_page_token"));
    }
    if (options.limit > 0) {
      if (page->entries_size() > remaining) {
        page->mutable_entries()->DeleteSubrange(static_cast<int>(remaining),
                                                page->entries_size() - static_cast<int>(remaining));
      }
      remaining -= page->entries_size();
    }
    const bool go_on = on_page(*page);
    if (page->next_page_token().empty()) return std::string();
    if (!go_on || (options.limit > 0 && remaining == 0)) return page->next_page_token();
    token = page->next_page_token();
  }
}

}  // namespace kiq::client
