"""The built-in tasks, one module each; shared code lives in :mod:`rqjobs.tasks.commons`.

Importing this package registers them. User tasks register the same way, from the
modules named in ``tasks_modules`` or the ``rqjobs.tasks`` entry-point group.
"""

from rqjobs.tasks.image_uploader import create_image_set
from rqjobs.tasks.mail_sender import send_mail
from rqjobs.tasks.word_counter import count_words

__all__ = ["count_words", "create_image_set", "send_mail"]
