// tools/report/report.cpp: writers for .npy, .png and .svg files.
#include "tools/report/report.hpp"

#include <fmt/format.h>
#include <stb_easy_font.h>
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
uint8_t to_byte(float value) {
  return static_cast<uint8_t>(std::lround(std::clamp(value, 0.0f, 1.0f) * 255.0f));
}
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

Image upscale_nearest(const Image& image, int64_t factor) {
  Image out{image.width * factor, image.height * factor, {}};
  out.rgb.resize(out.width * out.height * 3);
  for (int64_t y = 0; y < out.height; ++y) {
    for (int64_t x = 0; x < out.width; ++x) {
      std::copy_n(&image.rgb[((y / factor) * image.width + x / factor) * 3], 3, &out.rgb[(y * out.width + x) * 3]);
    }
  }
  return out;
}

void draw_text(Image& image, int64_t x, int64_t y, const std::string& text, int scale, const uint8_t colour[3]) {
  // stb_easy_font writes quads: 4 vertices of (x, y, z as floats, RGBA as bytes), 16 bytes each.
  struct Vertex {
    float x, y, z;
    unsigned char rgba[4];
  };
  std::vector<Vertex> vertices(text.size() * 70 * 4 + 4);
  std::string copy = text;
  unsigned char white[4] = {255, 255, 255, 255};
  const int quads = stb_easy_font_print(0, 0, copy.data(), white, vertices.data(),
                                        static_cast<int>(vertices.size() * sizeof(Vertex)));
  for (int q = 0; q < quads; ++q) {
    const Vertex* v = &vertices[q * 4];
    const int64_t x0 = x + static_cast<int64_t>(v[0].x * scale), y0 = y + static_cast<int64_t>(v[0].y * scale);
    const int64_t x1 = x + static_cast<int64_t>(v[2].x * scale), y1 = y + static_cast<int64_t>(v[2].y * scale);
    for (int64_t py = std::max<int64_t>(0, y0); py < std::min(image.height, y1); ++py) {
      for (int64_t px = std::max<int64_t>(0, x0); px < std::min(image.width, x1); ++px) {
        std::copy(colour, colour + 3, &image.rgb[(py * image.width + px) * 3]);
      }
    }
  }
}

Image grid(const std::vector<std::vector<Image>>& rows, const std::vector<std::vector<std::string>>& column_captions,
           const std::string& banner) {
  constexpr int64_t margin = 8, line = 12;  // stb_easy_font's lines are 12 units apart
  constexpr uint8_t black[3] = {0, 0, 0}, red[3] = {192, 20, 20};
  int64_t cell_w = 0, cell_h = 0, columns = 0;
  size_t caption_lines = 0;
  for (const auto& row : rows) {
    columns = std::max<int64_t>(columns, row.size());
    for (const Image& image : row) cell_w = std::max(cell_w, image.width), cell_h = std::max(cell_h, image.height);
  }
  for (const auto& caption : column_captions) caption_lines = std::max(caption_lines, caption.size());
  const int64_t banner_h = banner.empty() ? 0 : 2 * line + margin;
  const int64_t caption_h = static_cast<int64_t>(caption_lines) * line;
  Image out;
  out.width = columns * cell_w + (columns + 1) * margin;
  out.height = banner_h + caption_h + static_cast<int64_t>(rows.size()) * cell_h +
               (static_cast<int64_t>(rows.size()) + 1) * margin;
  out.rgb.assign(out.width * out.height * 3, 255);
  if (!banner.empty()) draw_text(out, margin, margin, banner, 2, red);
  for (size_t c = 0; c < column_captions.size(); ++c) {
    for (size_t l = 0; l < column_captions[c].size(); ++l) {
      draw_text(out, margin + c * (cell_w + margin), banner_h + margin + l * line, column_captions[c][l], 1, black);
    }
  }
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t c = 0; c < rows[r].size(); ++c) {
      const Image& image = rows[r][c];
      const int64_t left = margin + c * (cell_w + margin);
      const int64_t top = banner_h + caption_h + margin + r * (cell_h + margin);
      for (int64_t y = 0; y < image.height; ++y) {
        std::copy(&image.rgb[y * image.width * 3], &image.rgb[(y + 1) * image.width * 3],
                  &out.rgb[((top + y) * out.width + left) * 3]);
      }
    }
  }
  return out;
}

namespace {
std::string xml_escaped(const std::string& text) {
  std::string escaped;
  for (char c : text) {
    switch (c) {
      case '&': escaped += "&amp;"; break;
      case '<': escaped += "&lt;"; break;
      case '>': escaped += "&gt;"; break;
      case '"': escaped += "&quot;"; break;
      default: escaped += c;
    }
  }
  return escaped;
}
}  // namespace

std::string variance_svg(const std::vector<double>& ratios, const std::string& title) {
  const double width = 640, height = 360, left = 56, right = 16, top = 40, bottom = 40;
  const double plot_w = width - left - right, plot_h = height - top - bottom;
  const double largest = ratios.empty() ? 1.0 : std::max(1e-12, *std::max_element(ratios.begin(), ratios.end()));
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"22\" font-size=\"15\">{3}</text>\n",
      width, height, left, xml_escaped(title));
  for (int tick = 0; tick <= 4; ++tick) {
    const double value = largest * tick / 4, y = top + plot_h * (1 - value / largest);
    svg += fmt::format(
        "<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>"
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
  // Large captures list only their leading components (prism/pca.hpp): say what share they hold.
  double listed = 0.0;
  for (double r : ratios) listed += r;
  const std::string share = listed < 0.9999 ? fmt::format(", together {:.1f}% of the variance", 100 * listed) : "";
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">principal component (1 to {}{})</text>\n",
                     left + plot_w / 2, height - 12, ratios.size(), share);
  svg += fmt::format(
      "<text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">explained "
      "variance ratio</text>\n</svg>\n",
      top + plot_h / 2, top + plot_h / 2);
  return svg;
}

}  // namespace prism
