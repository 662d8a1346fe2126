// tools/report/report.cpp: writers for .npy, .png and .svg files.
#include "tools/report/report.hpp"

#include <fmt/format.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "engine/error.hpp"

namespace prism {

void write_file_atomically(const std::string& path, const std::string& bytes) {
  const std::string temporary = path + ".partial";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(path + ": cannot write here (does the folder exist, and may you write to it?)");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      std::remove(temporary.c_str());
      throw Error(path + ": writing failed (is the disk full?)");
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    throw Error(path + ": cannot move the finished file into place");
  }
}

std::string npy_bytes(const float* values, const Shape& shape) {
  std::string dims;
  for (int64_t d : shape) dims += std::to_string(d) + ", ";
  if (shape.size() > 1) dims.resize(dims.size() - 2);  // "(4,)" keeps its comma, "(4, 5)" does not
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic, version, header length; the header is padded with spaces so the data starts at a
  // multiple of 64 bytes, and ends with a newline.
  const size_t preamble = 10;
  header.append(63 - (preamble + header.size()) % 64, ' ');
  header += '\n';
  std::string bytes("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>(header.size() >> 8);
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(values), shape_numel(shape) * sizeof(float));
  return bytes;
}

std::string png_bytes(const Image& image) {
  std::string bytes;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), size);
  };
  if (!stbi_write_png_to_func(append, &bytes, static_cast<int>(image.width), static_cast<int>(image.height), 3,
                              image.rgb.data(), static_cast<int>(image.width * 3))) {
    throw Error("cannot encode a PNG image");
  }
  return bytes;
}

namespace {
uint8_t to_byte(float value) { return static_cast<uint8_t>(std::lround(std::clamp(value, 0.0f, 1.0f) * 255.0f)); }
}  // namespace

Image colours_to_image(const Tensor& maps, int64_t n) {
  const int64_t height = maps.dim(2), width = maps.dim(3), plane = height * width;
  Image image{width, height, std::vector<uint8_t>(plane * 3)};
  for (int64_t p = 0; p < plane; ++p) {
    for (int c = 0; c < 3; ++c) image.rgb[p * 3 + c] = to_byte(maps.data()[(n * 3 + c) * plane + p]);
  }
  return image;
}

Image channel_to_image(const Tensor& maps, int64_t n, int channel) {
  const int64_t height = maps.dim(2), width = maps.dim(3), plane = height * width;
  Image image{width, height, std::vector<uint8_t>(plane * 3)};
  for (int64_t p = 0; p < plane; ++p) {
    const float value = maps.data()[(n * 3 + channel) * plane + p];
    for (int c = 0; c < 3; ++c) image.rgb[p * 3 + c] = to_byte(c == channel ? 1.0f - 0.35f * value : 1.0f - value);
  }
  return image;
}

Image grid(const std::vector<std::vector<Image>>& rows, int64_t margin) {
  int64_t cell_w = 0, cell_h = 0, columns = 0;
  for (const auto& row : rows) {
    columns = std::max<int64_t>(columns, row.size());
    for (const Image& image : row) cell_w = std::max(cell_w, image.width), cell_h = std::max(cell_h, image.height);
  }
  Image out;
  out.width = columns * cell_w + (columns + 1) * margin;
  out.height = static_cast<int64_t>(rows.size()) * cell_h + (static_cast<int64_t>(rows.size()) + 1) * margin;
  out.rgb.assign(out.width * out.height * 3, 255);
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t c = 0; c < rows[r].size(); ++c) {
      const Image& image = rows[r][c];
      const int64_t left = margin + c * (cell_w + margin), top = margin + r * (cell_h + margin);
      for (int64_t y = 0; y < image.height; ++y) {
        std::copy(&image.rgb[y * image.width * 3], &image.rgb[(y + 1) * image.width * 3],
                  &out.rgb[((top + y) * out.width + left) * 3]);
      }
    }
  }
  return out;
}

std::string variance_svg(const std::vector<double>& ratios, const std::string& title) {
  const double width = 640, height = 360, left = 56, right = 16, top = 40, bottom = 40;
  const double plot_w = width - left - right, plot_h = height - top - bottom;
  const double largest = ratios.empty() ? 1.0 : std::max(1e-12, *std::max_element(ratios.begin(), ratios.end()));
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"22\" font-size=\"15\">{3}</text>\n",
      width, height, left, title);
  for (int tick = 0; tick <= 4; ++tick) {
    const double value = largest * tick / 4, y = top + plot_h * (1 - value / largest);
    svg += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>"
                       "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5:.3f}</text>\n",
                       left, y, width - right, left - 6, y + 4, value);
  }
  const double bar = ratios.empty() ? 0 : plot_w / ratios.size();
  for (size_t i = 0; i < ratios.size(); ++i) {
    const double h = plot_h * ratios[i] / largest;
    svg += fmt::format("<rect x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\" fill=\"{}\"/>\n",
                       left + i * bar, top + plot_h - h, std::max(bar * 0.85, 0.5), h, i < 3 ? "#c0392b" : "#34495e");
  }
  std::string note;
  for (size_t i = 0; i < ratios.size() && i < 3; ++i) note += fmt::format("PC {}: {:.3f}   ", i + 1, ratios[i]);
  svg += fmt::format("<text x=\"{}\" y=\"{}\" font-style=\"italic\">{}</text>\n", left + plot_w * 0.3, top + 20, note);
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">principal component (1 to {})</text>\n",
                     left + plot_w / 2, height - 12, ratios.size());
  svg += fmt::format("<text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">explained "
                     "variance ratio</text>\n</svg>\n",
                     top + plot_h / 2, top + plot_h / 2);
  return svg;
}

}  // namespace prism
