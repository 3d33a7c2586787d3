"""The glyphs world: a stand-in with as many classes as ImageNet, drawn procedurally (see :mod:`.world`)."""
