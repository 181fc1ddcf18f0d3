//! `format=pdf`: graphite-web draws its graphs on cairo's PDF surface; we draw ours as SVG, one
//! layout with the PNG and SVG ones, and convert that with typst's `svg2pdf` (its `usvg`
//! parses it). The text goes in as text in the compiled-in DejaVu faces, subset and embedded
//! with a ToUnicode map, as cairo's PDFs carry theirs: no system fonts are looked for, and the
//! text can be searched and copied. usvg shapes it without kerning (our SVG says so, as
//! cairo's text and the PNG's have none) but with the font's ligatures (`fi`).
//!
//! One user unit of the SVG is one point, so the page is `width` x `height` points. graphite-web
//! 1.1.8 shrinks its page to `width * 72 / 300` points (cairo's fallback resolution) and lays the
//! graph out in that, 10-point text on a page of 79 x 60 for the default size; we keep the
//! graph as the PNG has it instead.

use std::sync::{Arc, OnceLock};

use svg2pdf::usvg::{self, fontdb};

use crate::error::{QueryError, Result};
use crate::graphite::graph::canvas::FONT_FILES;

/// The font database usvg resolves `DejaVu Sans` (and `sans-serif`) in: the four compiled-in
/// faces, loaded once, without copying them.
fn fonts() -> Arc<fontdb::Database> {
    static DB: OnceLock<Arc<fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = fontdb::Database::new();
        for f in FONT_FILES {
            db.load_font_source(fontdb::Source::Binary(Arc::new(f)));
        }
        db.set_sans_serif_family("DejaVu Sans");
        Arc::new(db)
    })
    .clone()
}

/// The PDF of one of our SVG graphs.
pub(crate) fn svg_to_pdf(svg: &str) -> Result<Vec<u8>> {
    let options = usvg::Options {
        fontdb: fonts(),
        font_family: "DejaVu Sans".into(),
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(svg, &options)
        .map_err(|e| QueryError::Internal(format!("the graph's svg does not parse: {e}")))?;
    svg2pdf::to_pdf(
        &tree,
        svg2pdf::ConversionOptions::default(),
        svg2pdf::PageOptions::default(),
    )
    .map_err(|e| QueryError::Internal(format!("pdf conversion failed: {e}")))
}

#[cfg(test)]
mod tests {
    use crate::graphite::graph::{render_pdf, render_pie, ImageFormat};
    use crate::series::TimeSeries;

    /// The one page's size in points, its text, and the names of the fonts it embeds.
    fn read(pdf: &[u8]) -> ((f32, f32), String, Vec<String>) {
        assert!(pdf.starts_with(b"%PDF-"), "{:?}", &pdf[..pdf.len().min(8)]);
        let doc = lopdf::Document::load_mem(pdf).expect("the pdf parses");
        let pages = doc.get_pages();
        assert_eq!(pages.len(), 1, "one page");
        let id = pages.values().next().copied().expect("a page");
        let page = doc.get_dictionary(id).expect("a page dictionary");
        let media: Vec<f32> = page
            .get(b"MediaBox")
            .and_then(lopdf::Object::as_array)
            .expect("a MediaBox")
            .iter()
            .map(|o| o.as_float().expect("a number"))
            .collect();
        assert_eq!(media[..2], [0.0, 0.0]);
        // Each glyph is placed on its own, so each comes out on a line of its own.
        let text = doc
            .extract_text(&[1])
            .expect("text extracts")
            .replace('\n', "");
        let fonts = doc
            .get_page_fonts(id)
            .expect("fonts")
            .values()
            .filter_map(|f| f.get(b"BaseFont").ok())
            .filter_map(|n| n.as_name().ok())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        ((media[2], media[3]), text, fonts)
    }

    fn series() -> Vec<TimeSeries> {
        vec![
            TimeSeries::new("legend.one", 0, 60, vec![Some(1.0); 30]),
            TimeSeries::new("legend.two", 0, 60, vec![Some(2.0); 30]),
        ]
    }

    #[test]
    fn a_line_graph_is_a_page_of_its_size_with_its_text() {
        let pdf = render_pdf(
            series(),
            [
                ("width", "400"),
                ("height", "300"),
                ("title", "Requests+per+second"),
            ],
        )
        .expect("pdf");
        let (size, text, fonts) = read(&pdf);
        assert_eq!(size, (400.0, 300.0));
        for t in ["Requests per second", "legend.one", "legend.two"] {
            assert!(text.contains(t), "{t:?} in {text:?}");
        }
        assert!(
            fonts.iter().all(|f| f.ends_with("DejaVuSans")),
            "the compiled-in face, subset: {fonts:?}"
        );
        // The default size, the legend hidden, bold text.
        let (size, text, fonts) = read(
            &render_pdf(series(), [("hideLegend", "true"), ("fontBold", "true")]).expect("pdf"),
        );
        assert_eq!(size, (330.0, 250.0));
        assert!(!text.contains("legend.one"), "{text:?}");
        assert!(
            fonts.iter().any(|f| f.ends_with("DejaVuSans-Bold")),
            "{fonts:?}"
        );
        // No data is still a page, with graphite's words for it.
        let (_, text, _) = read(&render_pdf(vec![], []).expect("pdf"));
        assert!(text.contains("No Data"), "{text:?}");
    }

    #[test]
    fn a_pie_is_a_page_with_its_labels_and_legend() {
        let slices = vec![("first".to_owned(), 1.0), ("second".to_owned(), 3.0)];
        let pdf = render_pie(
            slices,
            [("width", "500"), ("height", "200")],
            ImageFormat::Pdf,
        )
        .expect("pdf");
        let (size, text, _) = read(&pdf);
        assert_eq!(size, (500.0, 200.0));
        for t in ["%25.00", "%75.00", "first", "second"] {
            assert!(text.contains(t), "{t:?} in {text:?}");
        }
    }
}
