// e2t_stream.h -- the stream type between the kernels' shell and the training engine's RTL
// blackbox (train_engine.h). Under Vitis HLS (hls_stream.h available) it is hls::stream; for
// the C simulation built by g++ it is the small stand-in below.
#ifndef E2T_STREAM_H
#define E2T_STREAM_H

#include <cstddef>

#if defined(__has_include)
#if __has_include(<hls_stream.h>)
#include <hls_stream.h>
#define E2T_HAVE_HLS_STREAM 1
#endif
#endif
#ifndef E2T_HAVE_HLS_STREAM
#include <stdexcept>
#include <vector>
#endif

namespace psg {

#ifdef E2T_HAVE_HLS_STREAM
template <class T> using stream = hls::stream<T>;
#else
// A stand-in for hls::stream with the calls the kernels use (read, write, empty, size), and
// pending()/consume() so that the engine's C model reads a call's beats in place. A vector
// and a read index: once drained it is emptied but keeps its memory, so a stream reused call
// after call allocates nothing per beat.
template <class T> class stream {
  public:
    void write(const T& v) { q_.push_back(v); }
    // The slot the next write() would fill, written in place (no copy of a whole beat).
    T& write_slot() {
        q_.emplace_back();
        return q_.back();
    }
    T read() {
        if (head_ == q_.size()) throw std::runtime_error("psg::stream::read on an empty stream (the producer wrote too few beats)");
        T v = q_[head_++];
        drained();
        return v;
    }
    bool empty() const { return head_ == q_.size(); }
    std::size_t size() const { return q_.size() - head_; }
    // The unread elements in place, and dropping the first n of them.
    const T* pending(std::size_t& n) const {
        n = q_.size() - head_;
        return q_.data() + head_;
    }
    void consume(std::size_t n) {
        if (n > size()) throw std::runtime_error("psg::stream::consume past the end");
        head_ += n;
        drained();
    }
  private:
    void drained() {
        if (head_ == q_.size()) {
            q_.clear();
            head_ = 0;
        }
    }
    std::vector<T> q_;
    std::size_t head_ = 0;
};
#endif

}  // namespace psg

#endif  // E2T_STREAM_H
