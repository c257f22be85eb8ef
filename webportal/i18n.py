"""A small translation layer: English message ids, German and French catalogs.

Templates write `{{ _("Sign in") }}`; the language is the account's when someone
is logged in, else the browser's Accept-Language. An id missing from a catalog
falls back to English, and a test checks every id used in a template has a
German and a French entry, so a new page cannot silently ship half-translated.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask, g, request
from flask_login import current_user

from webportal import i18n_account, i18n_mailprograms, i18n_preferences, i18n_secure, i18n_webmail

DEFAULT_LANGUAGE = "en"
SUPPORTED = ("en", "de", "fr")

_BASE: Mapping[str, Mapping[str, str]] = {
    "de": {
        "Sign in": "Anmelden",
        "Email": "E-Mail-Adresse",
        "Password": "Passwort",
        "Email or password is wrong.": "E-Mail-Adresse oder Passwort ist falsch.",
        "You have been signed out.": "Sie wurden abgemeldet.",
        "Sign out": "Abmelden",
        "Menu": "Menü",
        "Signed in as {email}": "Angemeldet als {email}",
        "Inbox": "Posteingang",
        "From": "Von",
        "To": "An",
        "Subject": "Betreff",
        "Date": "Datum",
        "Size": "Größe",
        "Encrypted": "Verschlüsselt",
        "(no subject)": "(kein Betreff)",
        "No messages.": "Keine Nachrichten.",
        "Newer": "Neuere",
        "Older": "Ältere",
        "Page {page} of {pages}": "Seite {page} von {pages}",
        "{size} KB": "{size} KB",
        "{size} MB": "{size} MB",
        "Bad request": "Ungültige Anfrage",
        "The request could not be understood.": "Die Anfrage konnte nicht verstanden werden.",
        "Form expired": "Formular abgelaufen",
        "This page was open too long for its form to be sent, so nothing was done. What you"
        " wrote is back in the form: check it and send it again.": (
            "Diese Seite war zu lange geöffnet, um ihr Formular noch zu senden; es ist nichts"
            " geschehen. Was Sie geschrieben haben, steht wieder im Formular: Prüfen Sie es und"
            " senden Sie es noch einmal."
        ),
        "This form has expired or was sent from another site."
        " Go back, reload the page and try again.": "Dieses Formular ist abgelaufen oder"
        " wurde von einer anderen Website gesendet. Gehen Sie zurück, laden Sie die Seite"
        " neu und versuchen Sie es noch einmal.",
        "The form data could not be read. Go back, reload the page and send the form again.": (
            "Die Formulardaten konnten nicht gelesen werden. Gehen Sie zurück, laden Sie die"
            " Seite neu und senden Sie das Formular noch einmal."
        ),
        "Access denied": "Zugriff verweigert",
        "You do not have access to this page.": "Sie haben keinen Zugriff auf diese Seite.",
        "Page not found": "Seite nicht gefunden",
        "There is no page at this address.": "Unter dieser Adresse gibt es keine Seite.",
        "Method not allowed": "Methode nicht erlaubt",
        "This page cannot be used that way.": "Diese Seite kann so nicht verwendet werden.",
        "Request too large": "Anfrage zu groß",
        "What you sent is larger than this server accepts.": "Was Sie gesendet haben, ist"
        " größer, als dieser Server annimmt.",
        "Too many attempts": "Zu viele Versuche",
        "Too many requests from your network. Please wait a few minutes and try again.": (
            "Zu viele Anfragen aus Ihrem Netzwerk. Bitte warten Sie einige Minuten und"
            " versuchen Sie es dann noch einmal."
        ),
        "Something went wrong": "Etwas ist schiefgelaufen",
        "The server could not complete your request. Please try again later.": (
            "Der Server konnte Ihre Anfrage nicht ausführen. Bitte versuchen Sie es später"
            " noch einmal."
        ),
        "Back to the start page": "Zur Startseite",
        "Temporarily unavailable": "Vorübergehend nicht verfügbar",
        "The server cannot store or send anything right now, so nothing was sent."
        " Try again in a minute: what you wrote is kept here.": (
            "Der Server kann gerade nichts speichern oder senden; es wurde nichts gesendet."
            " Versuchen Sie es in einer Minute noch einmal: Was Sie geschrieben haben, steht"
            " hier."
        ),
        "What you wrote": "Was Sie geschrieben haben",
        "The service is temporarily unavailable, so your request was not carried out."
        " Please try again in a few minutes.": (
            "Der Dienst ist vorübergehend nicht verfügbar, daher wurde Ihre Anfrage nicht"
            " ausgeführt. Bitte versuchen Sie es in einigen Minuten noch einmal."
        ),
    },
    "fr": {
        "Sign in": "Se connecter",
        "Email": "Adresse e-mail",
        "Password": "Mot de passe",
        "Email or password is wrong.": "Adresse e-mail ou mot de passe incorrect.",
        "You have been signed out.": "Vous avez été déconnecté.",
        "Sign out": "Se déconnecter",
        "Menu": "Menu",
        "Signed in as {email}": "Connecté en tant que {email}",
        "Inbox": "Boîte de réception",
        "From": "De",
        "To": "À",
        "Subject": "Objet",
        "Date": "Date",
        "Size": "Taille",
        "Encrypted": "Chiffré",
        "(no subject)": "(sans objet)",
        "No messages.": "Aucun message.",
        "Newer": "Plus récents",
        "Older": "Plus anciens",
        "Page {page} of {pages}": "Page {page} sur {pages}",
        "{size} KB": "{size} Ko",
        "{size} MB": "{size} Mo",
        "Bad request": "Requête invalide",
        "The request could not be understood.": "La requête n'a pas pu être comprise.",
        "Form expired": "Formulaire expiré",
        "This page was open too long for its form to be sent, so nothing was done. What you"
        " wrote is back in the form: check it and send it again.": (
            "Cette page est restée ouverte trop longtemps pour que son formulaire soit envoyé :"
            " rien n'a été fait. Ce que vous avez écrit est de nouveau dans le formulaire :"
            " vérifiez-le et envoyez-le à nouveau."
        ),
        "This form has expired or was sent from another site."
        " Go back, reload the page and try again.": "Ce formulaire a expiré ou a été envoyé"
        " depuis un autre site. Revenez en arrière, rechargez la page et réessayez.",
        "The form data could not be read. Go back, reload the page and send the form again.": (
            "Les données du formulaire n'ont pas pu être lues. Revenez en arrière, rechargez"
            " la page et renvoyez le formulaire."
        ),
        "Access denied": "Accès refusé",
        "You do not have access to this page.": "Vous n'avez pas accès à cette page.",
        "Page not found": "Page introuvable",
        "There is no page at this address.": "Il n'y a pas de page à cette adresse.",
        "Method not allowed": "Méthode non autorisée",
        "This page cannot be used that way.": "Cette page ne peut pas être utilisée ainsi.",
        "Request too large": "Requête trop volumineuse",
        "What you sent is larger than this server accepts.": "Ce que vous avez envoyé dépasse"
        " la taille acceptée par ce serveur.",
        "Too many attempts": "Trop de tentatives",
        "Too many requests from your network. Please wait a few minutes and try again.": (
            "Trop de requêtes depuis votre réseau. Veuillez patienter quelques minutes puis"
            " réessayer."
        ),
        "Something went wrong": "Une erreur est survenue",
        "The server could not complete your request. Please try again later.": (
            "Le serveur n'a pas pu traiter votre requête. Veuillez réessayer plus tard."
        ),
        "Back to the start page": "Retour à l'accueil",
        "Temporarily unavailable": "Temporairement indisponible",
        "The server cannot store or send anything right now, so nothing was sent."
        " Try again in a minute: what you wrote is kept here.": (
            "Le serveur ne peut rien enregistrer ni envoyer pour le moment : rien n'a été"
            " envoyé. Réessayez dans une minute : ce que vous avez écrit est conservé ici."
        ),
        "What you wrote": "Ce que vous avez écrit",
        "The service is temporarily unavailable, so your request was not carried out."
        " Please try again in a few minutes.": (
            "Le service est temporairement indisponible ; votre requête n'a donc pas été"
            " exécutée. Veuillez réessayer dans quelques minutes."
        ),
    },
}
CATALOGS: Mapping[str, Mapping[str, str]] = {
    "de": {
        **_BASE["de"],
        **i18n_account.DE,
        **i18n_secure.DE,
        **i18n_webmail.DE,
        **i18n_preferences.DE,
        **i18n_mailprograms.DE,
    },
    "fr": {
        **_BASE["fr"],
        **i18n_account.FR,
        **i18n_secure.FR,
        **i18n_webmail.FR,
        **i18n_preferences.FR,
        **i18n_mailprograms.FR,
    },
}


def translate(language: str, message: str, **params: object) -> str:
    """`message` in `language` (English when no entry), with `{name}` fields filled in."""
    text = CATALOGS.get(language, {}).get(message, message)
    return text.format(**params) if params else text


def normalize_language(value: str | None) -> str | None:
    """ "de-CH" → "de"; None for languages the portal does not speak."""
    if not value:
        return None
    primary = value.split("-", 1)[0].split("_", 1)[0].strip().lower()
    return primary if primary in SUPPORTED else None


def select_language() -> str:
    """The account's language when logged in, else the browser's best match."""
    if current_user.is_authenticated:
        chosen = normalize_language(getattr(current_user, "language", None))
        if chosen:
            return chosen
    return browser_language()


def browser_language() -> str:
    """The browser's best match (Accept-Language), without asking who is logged in: the
    outage page's language, when the account cannot be loaded (webportal.errors)."""
    # By quality, primary subtag only: "de-CH, en;q=0.5" is German (werkzeug's
    # best_match would pick the exact "en" over the regional "de-CH").
    for value, _quality in request.accept_languages:
        chosen = normalize_language(value)
        if chosen:
            return chosen
    return DEFAULT_LANGUAGE


def current_language() -> str:
    if "sealgate_language" not in g:
        g.sealgate_language = select_language()
    language: str = g.sealgate_language
    return language


def gettext_noop(message: str) -> str:
    """Mark a message id for translation later (at render time), e.g. in `flash`."""
    return message


def gettext(message: str, **params: object) -> str:
    """Translate for the current request."""
    return translate(current_language(), message, **params)


def init_app(app: Flask) -> None:
    app.jinja_env.globals["_"] = gettext
    app.jinja_env.globals["current_language"] = current_language
