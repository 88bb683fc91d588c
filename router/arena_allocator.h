#pragma once

#include <grpcpp/support/message_allocator.h>

#include <google/protobuf/arena.h>

namespace kiq::router {

// Arena blocks for messages of scan entries: a page of them takes tens of KiB, so the arena
// grows to large blocks quickly.
inline google::protobuf::ArenaOptions ScanArenaOptions() {
  google::protobuf::ArenaOptions options;
  options.start_block_size = 4 << 10;
  options.max_block_size = 256 << 10;
  return options;
}

// Allocates a callback unary call's request and response on one protobuf arena, freed at once
// when the call ends (MessageHolder::Release). For calls answering thousands of small
// entries (a scan's page): each entry's message and strings would otherwise be allocated and
// freed one by one, which is most of what building and freeing such a response costs.
// Stateless and thread-safe; must outlive the service it is set on
// (SetMessageAllocatorFor_<Method>).
template <typename Request, typename Response>
class ArenaMessageAllocator final : public grpc::MessageAllocator<Request, Response> {
 public:
  grpc::MessageHolder<Request, Response>* AllocateMessages() override { return new Holder(); }

 private:
  class Holder final : public grpc::MessageHolder<Request, Response> {
   public:
    Holder() : arena_(ScanArenaOptions()) {
      this->set_request(google::protobuf::Arena::CreateMessage<Request>(&arena_));
      this->set_response(google::protobuf::Arena::CreateMessage<Response>(&arena_));
    }
    void Release() override { delete this; }

   private:
    google::protobuf::Arena arena_;
  };
};

}  // namespace kiq::router
