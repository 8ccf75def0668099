"""The review station (``inspector review``): a small web application in which people answer for the frames the
service kept in its audit folder, beside :mod:`inspector.service`, reading and writing only the audit folder.

- :mod:`~inspector.review.queue`: the frames, filters, neighbours and summary figures (plain Python, no web library);
- :mod:`~inspector.review.answers`: an answer posted by a page, checked and turned into a ``Review``;
- :mod:`~inspector.review.thumbs`: downscaled JPEGs of the frames, cached in memory;
- :mod:`~inspector.review.app`: the Starlette application (routes, token check, the JSON API);
- :mod:`~inspector.review.server`: the socket and the uvicorn server, in the foreground or in a thread.

Importing this package loads no web library: :mod:`~inspector.review.app` and :mod:`~inspector.review.server` do.
"""
