#pragma once

#include <grpcpp/support/message_allocator.h>

#include <google/protobuf/arena.h>

namespace kiq::router {

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
    Holder() : arena_(Options()) {
      this->set_request(google::protobuf::Arena::CreateMessage<Request>(&arena_));
      this->set_response(google::protobuf::Arena::CreateMessage<Response>(&arena_));
    }
    void Release() override { delete this; }

   private:
    static google::protobuf::ArenaOptions Options() {
      google::protobuf::ArenaOptions options;
      // A page of entries takes tens of KiB: grow to large blocks quickly.
      options.start_block_size = 4 << 10;
      options.max_block_size = 256 << 10;
      return options;
    }
    google::protobuf::Arena arena_;
  };
};

}  // namespace kiq::router
