"""All Qt/napari code of the plugin: thin dock widgets over the Qt-free core."""
