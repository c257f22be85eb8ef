"""German and French for the settings page and the admin link (merged into webportal.i18n.CATALOGS).

The admin console itself (templates/admin/) is in English only for now.
"""

from __future__ import annotations

DE: dict[str, str] = {
    "Settings": "Einstellungen",
    "Language": "Sprache",
    "Always encrypt the mail I send": "Meine gesendeten E-Mails immer verschlüsseln",
    "Recipients with a key get OpenPGP mail; others get a link to a password-protected page.": (
        "Empfänger mit Schlüssel erhalten OpenPGP-Mails, alle anderen einen Link zu einer"
        " passwortgeschützten Seite."
    ),
    "Your settings were saved.": "Ihre Einstellungen wurden gespeichert.",
    "Administration": "Verwaltung",
    "Administrators need two-factor login: turn it on to open the administration.": (
        "Administratoren brauchen die Zwei-Faktor-Anmeldung: Schalten Sie sie ein, um die"
        " Verwaltung zu öffnen."
    ),
}

FR: dict[str, str] = {
    "Settings": "Paramètres",
    "Language": "Langue",
    "Always encrypt the mail I send": "Toujours chiffrer les e-mails que j'envoie",
    "Recipients with a key get OpenPGP mail; others get a link to a password-protected page.": (
        "Les destinataires ayant une clé reçoivent un e-mail OpenPGP ; les autres, un lien vers"
        " une page protégée par mot de passe."
    ),
    "Your settings were saved.": "Vos paramètres ont été enregistrés.",
    "Administration": "Administration",
    "Administrators need two-factor login: turn it on to open the administration.": (
        "Les administrateurs doivent utiliser la connexion à deux facteurs : activez-la pour"
        " ouvrir l'administration."
    ),
}
