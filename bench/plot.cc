// kiq-bench-plot: draws p50/p99 latency against offered load as a PNG, from the ramp CSV of
// kiq-bench-load (label,inflight,offered_qps,ok,errors,not_found,qps,p50_ms,p99_ms,p999_ms).
// bench/run.sh uses gnuplot when it is installed; this is the fallback for machines without it
// (no root to apt-get gnuplot-nox), so it needs only zlib (zlib1g-dev, already a dependency of
// gRPC and RocksDB): a plain RGB PNG and a 3x5 pixel font for the axis labels.
//
//   kiq-bench-plot <ramp.csv> <out.png> [knee_ms]
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <zlib.h>

namespace {

constexpr int kW = 900, kH = 540, kLeft = 80, kRight = 30, kTop = 40, kBottom = 70;

struct Image {
  std::vector<uint8_t> px = std::vector<uint8_t>(kW * kH * 3, 255);
  void Set(int x, int y, uint32_t rgb) {
    if (x < 0 || y < 0 || x >= kW || y >= kH) return;
    uint8_t* p = &px[(y * kW + x) * 3];
    p[0] = rgb >> 16, p[1] = (rgb >> 8) & 255, p[2] = rgb & 255;
  }
  void Line(int x0, int y0, int x1, int y1, uint32_t rgb, int thick = 1) {
    const int steps = std::max(std::abs(x1 - x0), std::abs(y1 - y0)) + 1;
    for (int i = 0; i <= steps; ++i) {
      const int x = x0 + (x1 - x0) * i / steps, y = y0 + (y1 - y0) * i / steps;
      for (int dx = 0; dx < thick; ++dx)
        for (int dy = 0; dy < thick; ++dy) Set(x + dx - thick / 2, y + dy - thick / 2, rgb);
    }
  }
  // 3x5 glyphs, rows top to bottom, 3 bits each (MSB left), drawn at `scale`.
  void Text(int x, int y, const std::string& s, uint32_t rgb, int scale = 2) {
    static const std::map<char, std::vector<int>> font = {
        {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}},
        {'3', {7, 1, 7, 1, 7}}, {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}},
        {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 1, 1}}, {'8', {7, 5, 7, 5, 7}},
        {'9', {7, 5, 7, 1, 7}}, {'.', {0, 0, 0, 0, 2}}, {'k', {4, 5, 6, 5, 5}},
        {'p', {7, 5, 7, 4, 4}}, {'m', {0, 7, 7, 5, 5}}, {'s', {3, 4, 2, 1, 6}},
        {'Q', {7, 5, 5, 7, 1}}, {'P', {7, 5, 7, 4, 4}}, {'S', {7, 4, 7, 1, 7}},
        {'o', {0, 7, 5, 5, 7}}, {'f', {3, 4, 6, 4, 4}}, {'e', {7, 5, 7, 4, 7}},
        {'r', {0, 6, 5, 4, 4}}, {'d', {1, 1, 7, 5, 7}}, {'l', {4, 4, 4, 4, 3}},
        {'a', {0, 7, 1, 7, 7}}, {'t', {4, 7, 4, 4, 3}}, {'n', {0, 6, 5, 5, 5}},
        {'c', {0, 7, 4, 4, 7}}, {'y', {5, 5, 7, 1, 7}}, {'/', {1, 1, 2, 4, 4}},
        {'(', {1, 2, 2, 2, 1}}, {')', {4, 2, 2, 2, 4}}, {'=', {0, 7, 0, 7, 0}},
        {'-', {0, 0, 7, 0, 0}}, {'g', {7, 5, 7, 1, 6}}, {'i', {2, 0, 2, 2, 2}},
        {'u', {0, 5, 5, 5, 7}}, {'b', {4, 4, 7, 5, 7}}, {'h', {4, 4, 7, 5, 5}},
        {'w', {0, 5, 7, 7, 5}}};
    for (char c : s) {
      auto it = font.find(c);
      if (it != font.end()) {
        for (int row = 0; row < 5; ++row)
          for (int col = 0; col < 3; ++col)
            if (it->second[row] & (4 >> col))
              for (int a = 0; a < scale; ++a)
                for (int b = 0; b < scale; ++b) Set(x + col * scale + a, y + row * scale + b, rgb);
      }
      x += 4 * scale;
    }
  }
};

void Put32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back((x >> s) & 255);
}

void Chunk(std::ofstream& out, const char* type, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> buf;
  Put32(buf, static_cast<uint32_t>(data.size()));
  buf.insert(buf.end(), type, type + 4);
  buf.insert(buf.end(), data.begin(), data.end());
  Put32(buf, static_cast<uint32_t>(crc32(0, buf.data() + 4, static_cast<uInt>(buf.size() - 4))));
  out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
}

bool WritePng(const Image& img, const std::string& path) {
  std::vector<uint8_t> raw;
  for (int y = 0; y < kH; ++y) {
    raw.push_back(0);  // filter: none
    raw.insert(raw.end(), img.px.begin() + y * kW * 3, img.px.begin() + (y + 1) * kW * 3);
  }
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  std::vector<uint8_t> z(size);
  if (compress2(z.data(), &size, raw.data(), static_cast<uLong>(raw.size()), 9) != Z_OK)
    return false;
  z.resize(size);
  std::ofstream out(path, std::ios::binary);
  const uint8_t sig[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  out.write(reinterpret_cast<const char*>(sig), 8);
  std::vector<uint8_t> ihdr;
  Put32(ihdr, kW), Put32(ihdr, kH);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit RGB
  Chunk(out, "IHDR", ihdr);
  Chunk(out, "IDAT", z);
  Chunk(out, "IEND", {});
  return static_cast<bool>(out);
}

std::string Fmt(double v) {
  char buf[32];
  if (v >= 1000)
    snprintf(buf, sizeof buf, std::fmod(v, 1000) == 0 ? "%.0fk" : "%.1fk", v / 1000);
  else if (v >= 10 || v == 0)
    snprintf(buf, sizeof buf, "%.0f", v);
  else
    snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: kiq-bench-plot ramp.csv out.png [knee_ms]\n");
    return 2;
  }
  const double knee = argc > 3 ? atof(argv[3]) : 50;
  std::ifstream in(argv[1]);
  std::string line;
  // Rows labelled "ramp" are kiq (p50 and p99); any other label (the bare server's ramp) is
  // drawn as a reference p99 line.
  std::vector<double> x, p50, p99, bx, bp99;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, ',');) f.push_back(cell);
    if (f.size() < 10 || f[2] == "offered_qps") continue;
    if (f[0] == "ramp") {
      x.push_back(atof(f[2].c_str())), p50.push_back(atof(f[7].c_str())),
          p99.push_back(atof(f[8].c_str()));
    } else {
      bx.push_back(atof(f[2].c_str())), bp99.push_back(atof(f[8].c_str()));
    }
  }
  if (x.empty()) {
    fprintf(stderr, "kiq-bench-plot: no data rows in %s\n", argv[1]);
    return 1;
  }
  // Log-scale latency axis (0.1 ms .. past the knee) so p50 and p99 are both readable.
  double xtop = *std::max_element(x.begin(), x.end());
  double ytop = *std::max_element(p99.begin(), p99.end());
  for (size_t i = 0; i < bx.size(); ++i)
    xtop = std::max(xtop, bx[i]), ytop = std::max(ytop, bp99[i]);
  // X ticks at a round step (1, 2, 2.5 or 5 times a power of ten) giving at most 8 ticks.
  double step = std::pow(10, std::floor(std::log10(xtop)));
  for (double m : {0.1, 0.2, 0.25, 0.5, 1.0}) {
    if (xtop / (step * m) <= 8) {
      step *= m;
      break;
    }
  }
  const double xmax = std::ceil(xtop * 1.02 / step) * step;
  const double ymin = 0.1, ymax = std::max(knee * 2, ytop * 1.2);
  const int pw = kW - kLeft - kRight, ph = kH - kTop - kBottom;
  auto X = [&](double v) { return kLeft + static_cast<int>(v / xmax * pw); };
  auto Y = [&](double v) {
    v = std::max(v, ymin);
    return kTop + ph - static_cast<int>(std::log10(v / ymin) / std::log10(ymax / ymin) * ph);
  };
  Image img;
  const uint32_t grid = 0xdddddd, axis = 0x000000;
  for (double d = 0.1; d <= ymax; d *= 10) {
    for (double m : {1.0, 2.0, 5.0}) {
      const double v = d * m;
      if (v > ymax) break;
      img.Line(kLeft, Y(v), kLeft + pw, Y(v), grid);
      img.Text(kLeft - 10 - 8 * static_cast<int>(Fmt(v).size()), Y(v) - 5, Fmt(v), axis);
    }
  }
  for (double v = 0; v <= xmax + step / 2; v += step) {
    img.Line(X(v), kTop, X(v), kTop + ph, grid);
    img.Text(X(v) - 8, kTop + ph + 10, Fmt(v), axis);
  }
  img.Line(kLeft, kTop, kLeft, kTop + ph, axis, 2);
  img.Line(kLeft, kTop + ph, kLeft + pw, kTop + ph, axis, 2);
  img.Line(kLeft, Y(knee), kLeft + pw, Y(knee), 0x888888);  // the knee threshold
  img.Text(kLeft + pw - 120, Y(knee) - 14, "p99 = " + Fmt(knee) + " ms", 0x888888);
  const struct {
    const std::vector<double>* x;
    const std::vector<double>* v;
    uint32_t rgb;
  } series[] = {{&bx, &bp99, 0x30a030}, {&x, &p50, 0x1f60c0}, {&x, &p99, 0xd02020}};
  for (const auto& s : series) {
    const std::vector<double>& xs = *s.x;
    const std::vector<double>& ys = *s.v;
    for (size_t i = 0; i < xs.size(); ++i) {
      if (i > 0) img.Line(X(xs[i - 1]), Y(ys[i - 1]), X(xs[i]), Y(ys[i]), s.rgb, 2);
      for (int d = -3; d <= 3; ++d)
        img.Line(X(xs[i]) - 3, Y(ys[i]) + d, X(xs[i]) + 3, Y(ys[i]) + d, s.rgb);
    }
  }
  img.Text(kLeft + 20, 12, "p50", 0x1f60c0, 3);
  img.Text(kLeft + 80, 12, "p99", 0xd02020, 3);
  if (!bx.empty()) img.Text(kLeft + 140, 12, "bare p99", 0x30a030, 3);
  img.Text(kLeft + 260, 14, "latency ms (log scale) at offered load", axis);
  img.Text(kLeft + pw / 2 - 80, kH - 30, "offered QPS", axis);
  if (!WritePng(img, argv[2])) {
    fprintf(stderr, "kiq-bench-plot: cannot write %s\n", argv[2]);
    return 1;
  }
  return 0;
}
