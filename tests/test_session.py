"""The Qt-free session model the widgets of one viewer share."""

from napari_chromosome_sort.session import IMPORTED, Session


def test_a_model_added_is_offered_and_announced():
    session, heard = Session(), []
    session.model_added.connect(heard.append)
    session.add_model("/tmp/a.safetensors")
    session.add_model("/tmp/b.safetensors", kind=IMPORTED)
    assert [m.path for m in session.models] == ["/tmp/a.safetensors", "/tmp/b.safetensors"]
    assert [m.title for m in heard] == ["trained here: a.safetensors", "imported: b.safetensors"]


def test_a_model_added_again_moves_last_once():
    session = Session()
    session.add_model("/tmp/a.safetensors")
    session.add_model("/tmp/b.safetensors")
    session.add_model("/tmp/a.safetensors", kind=IMPORTED)
    assert [m.path for m in session.models] == ["/tmp/b.safetensors", "/tmp/a.safetensors"]
    assert session.title("/tmp/a.safetensors") == "imported: a.safetensors"


def test_sessions_are_independent():
    first, second = Session(), Session()
    first.add_model("/tmp/a.safetensors")
    assert second.models == []


def test_calls_changed_names_the_layer():
    session, heard = Session(), []
    session.calls_changed.connect(heard.append)
    session.calls_changed.emit("spread predicted classes")
    assert heard == ["spread predicted classes"]


def test_layer_state_is_forgotten_with_the_layer():
    import gc

    class Layer:
        pass

    session, layer = Session(), Layer()
    session.layer_state[layer] = "review"
    assert session.layer_state[layer] == "review"
    del layer
    gc.collect()
    assert len(session.layer_state) == 0
