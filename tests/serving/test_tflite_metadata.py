"""TFLite Model Metadata: written as MediaPipe expects, read back, replaced, still runs."""

import io
import zipfile

import numpy as np
import pytest

from mobilenet_tf.inference import tflite_metadata as reader
from mobilenet_tf.serving import tflite_metadata as writer
from helpers import tiny_classifier_tflite

LABELS = ["cat", "dog", "bird with spaces"]


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory) -> bytes:
    """A real (tiny, untrained) image classifier converted by the TFLite converter."""
    return tiny_classifier_tflite(tmp_path_factory.mktemp("tiny"))


def _run(model_bytes, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model_bytes)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def _add(model_bytes, labels=LABELS, version="v1"):
    return writer.add_image_classifier_metadata(
        model_bytes, labels=labels, mean=[127.5] * 3, std=[127.5] * 3, name="Tiny",
        description="a test model", version=version, author="me", license="Apache-2.0")


def test_round_trip(tiny_tflite):
    out = _add(tiny_tflite)
    info = reader.read_image_classifier_metadata(out)
    assert info.labels == tuple(LABELS)
    assert (info.name, info.description, info.version) == ("Tiny", "a test model", "v1")
    assert (info.author, info.license) == ("me", "Apache-2.0")
    assert info.mean == (127.5,) * 3 and info.std == (127.5,) * 3
    assert info.input_color_space == "RGB"
    assert info.min_parser_version == "1.0.0"
    assert info.associated_files == ("labels.txt",)
    # the labels file is a zip member appended after the flatbuffer
    with zipfile.ZipFile(io.BytesIO(out)) as zf:
        assert zf.read("labels.txt").decode().splitlines() == LABELS
    assert out.startswith(tiny_tflite[:4])


def test_model_still_runs_identically(tiny_tflite):
    x = np.random.default_rng(0).uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
    np.testing.assert_array_equal(_run(tiny_tflite, x), _run(_add(tiny_tflite), x))


def test_converter_metadata_kept_and_ours_replaced(tiny_tflite):
    from tensorflow.lite.python import schema_py_generated as schema

    once = _add(tiny_tflite)
    twice = _add(once, labels=["a", "b", "c"], version="v2")
    info = reader.read_image_classifier_metadata(twice)
    assert info.labels == ("a", "b", "c") and info.version == "v2"
    assert info.associated_files == ("labels.txt",)

    def names(b):
        m = schema.Model.GetRootAsModel(b, 0)
        return [m.Metadata(i).Name().decode() for i in range(m.MetadataLength())]

    assert names(twice).count(reader.METADATA_NAME) == 1
    assert "min_runtime_version" in names(twice)
    assert set(names(tiny_tflite)) | {reader.METADATA_NAME} == set(names(twice))
    # no growth from re-populating: the old metadata buffer and zip are replaced
    assert abs(len(twice) - len(once)) < 64


def test_metadata_flatbuffer_fields(tiny_tflite):
    from mediapipe.tasks.metadata import metadata_schema_py_generated as md

    buf = reader.get_metadata_buffer(_add(tiny_tflite))
    assert md.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0)
    meta = md.ModelMetadataT.InitFromObj(md.ModelMetadata.GetRootAsModelMetadata(buf, 0))
    sg = meta.subgraphMetadata[0]
    image, probs = sg.inputTensorMetadata[0], sg.outputTensorMetadata[0]
    assert image.content.contentPropertiesType == md.ContentProperties.ImageProperties
    assert image.processUnits[0].optionsType == md.ProcessUnitOptions.NormalizationOptions
    assert list(image.stats.min) == [-1.0] * 3 and list(image.stats.max) == [1.0] * 3
    assert probs.associatedFiles[0].type == md.AssociatedFileType.TENSOR_AXIS_LABELS
    assert list(probs.stats.min) == [0.0] and list(probs.stats.max) == [1.0]


def test_min_parser_version_follows_schema_members():
    from mediapipe.tasks.metadata import metadata_schema_py_generated as md

    meta = md.ModelMetadataT()
    meta.subgraphMetadata = [md.SubGraphMetadataT()]
    assert writer.min_parser_version(meta) == "1.0.0"
    meta.subgraphMetadata[0].inputProcessUnits = []
    assert writer.min_parser_version(meta) == "1.1.0"
    f = md.AssociatedFileT()
    f.version = "2"
    meta.associatedFiles = [f]
    assert writer.min_parser_version(meta) == "1.4.1"
    meta.subgraphMetadata[0].customMetadata = []
    assert writer.min_parser_version(meta) == "1.5.0"


def test_label_count_must_match(tiny_tflite):
    with pytest.raises(ValueError, match="3 outputs but 2 labels"):
        _add(tiny_tflite, labels=["a", "b"])


def test_reader_rejects_model_without_metadata(tiny_tflite):
    with pytest.raises(ValueError, match="no TFLITE_METADATA"):
        reader.read_image_classifier_metadata(tiny_tflite)


@pytest.mark.parametrize("cut", [0, 4, 20, 200])
def test_reader_rejects_cut_bytes_with_a_value_error(tiny_tflite, cut):
    """The flatbuffer classes follow offsets without bounds checks (``struct.error``); the
    reader answers bytes that are not a whole model with a ValueError."""
    with pytest.raises(ValueError, match="not a (whole )?TFLite model"):
        reader.read_image_classifier_metadata(_add(tiny_tflite)[:cut])


def test_reader_tells_labels_cut_off_the_end(tiny_tflite):
    """The labels are zipped onto the end of the model: a file cut short loses them
    first, and the reader says so with its own ValueError subclass."""
    with pytest.raises(reader.MissingAssociatedFile, match="labels.txt named in the "
                       "metadata is not attached"):
        reader.read_image_classifier_metadata(_add(tiny_tflite)[:-10])


SYNSETS = ["n01440764", "n01443537", "n03710721"]  # tench, goldfish, maillot/tank suit


def test_synset_labels_get_display_names(tiny_tflite):
    """ImageNet synset IDs stay the labels; their class names are attached as the
    ``en`` display names, which MediaPipe's ImageClassifier returns as display_name."""
    out = _add(tiny_tflite, labels=SYNSETS)
    info = reader.read_image_classifier_metadata(out)
    assert info.labels == tuple(SYNSETS)
    assert info.display_names == ("tench", "goldfish", "tank suit")
    assert info.associated_files == ("labels.txt", "labels_en.txt")
    assert info.min_parser_version == "1.0.0"
    # other labels: no display-names file
    plain = reader.read_image_classifier_metadata(_add(tiny_tflite))
    assert plain.display_names == plain.labels and plain.associated_files == ("labels.txt",)


def test_mediapipe_reads_display_names(tiny_tflite, tmp_path):
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    model_path = tmp_path / "tiny.tflite"
    model_path.write_bytes(_add(tiny_tflite, labels=SYNSETS))
    image = mp.Image(image_format=mp.ImageFormat.SRGB,
                     data=np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8))
    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=str(model_path)), max_results=3)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        categories = classifier.classify(image).classifications[0].categories
    names = dict(zip(SYNSETS, ("tench", "goldfish", "tank suit")))
    assert {c.category_name for c in categories} == set(SYNSETS)
    assert all(c.display_name == names[c.category_name] for c in categories)
